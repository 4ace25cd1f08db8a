"""Starts `tfmtl train --strategy tpu` on the TPU VM, detached, with the staged data copied to each host.

Everything after `--` goes to `tfmtl train`; data paths there are relative to the
copied data (`tfmtl-data/` on each host). A pod slice (more than one host) runs the
same command on every host (`--workers all`, the default); `--workers first` runs it
on host 0 only. Follow it with tpu/logs.py.

Example:

    python tpu/train.py --name mtl-v5e --zone us-west4-a --accelerator-type v5litepod-8 \
        --bucket gs://my-bucket/mtl --run mmoe --dry-run -- \
        --train-data tfmtl-data/train.parquet --test-data tfmtl-data/test.parquet \
        --task income:binary --task marital:binary --mixed-precision bf16
"""

from __future__ import annotations

import shlex

import kit


def commands(args) -> list[list[str]]:  # noqa: ANN001
    pod = kit.hosts(args.accelerator_type) > 1
    workers = "all" if pod and args.workers == "all" else "0"
    # One host finds its own chips ("local"); a slice is resolved by its name from every host.
    tpu = args.name if pod else "local"
    train = shlex.join([kit.TFMTL, "train", "--strategy", "tpu", "--tpu", tpu, "--out", f"{kit.RUNS_DIR}/{args.run}",
                        *args.train_args])  # fmt: skip
    staged = f"'{args.bucket.rstrip('/')}/data/*'"
    remote = (
        f"mkdir -p {kit.DATA_DIR} && gcloud storage cp --recursive {staged} {kit.DATA_DIR}/ && "
        f"nohup {train} > {kit.LOG_FILE} 2>&1 & echo $! > {kit.PID_FILE}"
    )
    return [kit.ssh(args, workers, remote)]


def main() -> None:
    p = kit.parser(__doc__.splitlines()[0])
    p.add_argument("--accelerator-type", required=True, help="as created, e.g. v5litepod-8 or v6e-16")
    p.add_argument("--bucket", required=True, help="gs://BUCKET[/PREFIX] the data was staged to")
    p.add_argument("--run", default="run", help="run name: the output folder tfmtl-runs/RUN on host 0")
    p.add_argument("--workers", choices=["all", "first"], default="all", help="on a pod slice, where to start it")
    p.add_argument("train_args", nargs="*", help="after --: arguments of tfmtl train")
    args = p.parse_args()
    kit.execute(commands(args), args.dry_run)


if __name__ == "__main__":
    main()
