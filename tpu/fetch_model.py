"""Exports the trained model for TF Serving on the TPU VM and copies it, with the run's metrics, back here.

Example:

    python tpu/fetch_model.py --name mtl-v5e --zone us-west4-a --run mmoe --out runs/ --dry-run
"""

from __future__ import annotations

import kit


def commands(args) -> list[list[str]]:  # noqa: ANN001
    run, exported = f"{kit.RUNS_DIR}/{args.run}", f"{kit.EXPORT_DIR}/{args.run}"
    return [
        kit.ssh(args, "0", f"{kit.TFMTL} export --model-path {run} --out {exported}"),
        ["mkdir", "-p", args.out],
        kit.scp(args, "0", f"{args.name}:{exported}", args.out, recurse=True),
        kit.scp(args, "0", f"{args.name}:{run}/metrics.json", f"{args.out.rstrip('/')}/{args.run}-metrics.json"),
    ]


def main() -> None:
    p = kit.parser(__doc__.splitlines()[0])
    p.add_argument("--run", default="run", help="the run name given to tpu/train.py")
    p.add_argument("--out", default="runs", help="local folder for the exported model and metrics")
    args = p.parse_args()
    kit.execute(commands(args), args.dry_run)


if __name__ == "__main__":
    main()
