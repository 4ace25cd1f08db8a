"""A whole run on a fresh TPU VM: create, install, stage data, train, wait, fetch the model, delete.

The VM is deleted at the end even when a step fails (unless --keep). With --dry-run
it prints every command of the run, in order, and runs nothing.

Example (the README's walk-through):

    python tpu/full_run.py --name mtl-v5e --zone us-west4-a --accelerator-type v5litepod-8 \
        --runtime-version v2-alpha-tpuv5-lite --bucket gs://my-bucket/mtl --files train.parquet test.parquet \
        --run mmoe --dry-run -- --train-data tfmtl-data/train.parquet --test-data tfmtl-data/test.parquet \
        --task income:binary --task marital:binary --mixed-precision bf16
"""

from __future__ import annotations

import argparse

import create_vm
import delete_vm
import fetch_model
import install
import kit
import stage_data
import train


def wait_command(run: str) -> str:
    """Host 0's wait for its training process; it fails, with the log's end, when training ended without metrics."""
    metrics = f"{kit.RUNS_DIR}/{run}/metrics.json"
    return (
        f'while kill -0 "$(cat {kit.PID_FILE})" 2>/dev/null; do sleep 30; tail -n 1 {kit.LOG_FILE}; done; '
        f"test -f {metrics} || {{ tail -n 50 {kit.LOG_FILE}; echo 'training ended without {metrics}' >&2; exit 1; }}"
    )


def steps(args: argparse.Namespace) -> list[list[list[str]]]:
    """The commands of each step, in order; the last step deletes the VM."""
    wait = kit.ssh(args, "0", wait_command(args.run))
    return [
        create_vm.commands(args),
        install.commands(args),
        stage_data.commands(args),
        train.commands(args),
        [wait],
        fetch_model.commands(args),
        delete_vm.commands(args),
    ]


def main() -> None:
    p = kit.parser(__doc__.splitlines()[0])
    p.add_argument("--accelerator-type", required=True, help="e.g. v5litepod-8, v6e-8, or v6e-16 (a pod slice)")
    p.add_argument("--runtime-version", required=True, help="e.g. v2-alpha-tpuv5-lite or v2-alpha-tpuv6e")
    p.add_argument("--spot", action="store_true")
    p.add_argument("--tensorflow", default="tensorflow-tpu")
    p.add_argument("--python", default="python3.11")
    p.add_argument("--version", default=install._tfmtl_version())
    p.add_argument("--bucket", required=True)
    p.add_argument("--files", nargs="+", required=True)
    p.add_argument("--run", default="run")
    p.add_argument("--workers", choices=["all", "first"], default="all")
    p.add_argument("--out", default="runs")
    p.add_argument("--keep", action="store_true", help="do not delete the VM at the end")
    p.add_argument("train_args", nargs="*")
    args = p.parse_args()
    *work, delete = steps(args)
    try:
        for commands in work:
            kit.execute(commands, args.dry_run)
    finally:
        if not args.keep:
            kit.execute(delete, args.dry_run)


if __name__ == "__main__":
    main()
