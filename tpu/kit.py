"""Shared pieces of the Cloud TPU VM launch kit: the gcloud commands, and running or printing them.

Every script in tpu/ builds its commands here and either runs them or, with
`--dry-run`, prints them exactly as they would run (one shell line each) and runs
nothing. Nothing here is imported by tfmtl itself.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from collections.abc import Sequence

DATA_DIR = "tfmtl-data"  # on each TPU VM host, in the home folder
RUNS_DIR = "tfmtl-runs"
EXPORT_DIR = "tfmtl-export"
LOG_FILE = "tfmtl-train.log"
PID_FILE = "tfmtl-train.pid"  # the detached training process on each host
LIBTPU_INDEX = "https://storage.googleapis.com/libtpu-tf-releases/index.html"
VENV = "tfmtl-venv"  # tfmtl needs Python 3.11+, newer than the python3 of the TPU VM images
TFMTL = f"{VENV}/bin/tfmtl"


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every script takes: the TPU's name, zone and project, --dry-run."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--name", required=True, help="the TPU VM's name")
    p.add_argument("--zone", required=True, help="its zone, e.g. us-west4-a (v5e) or us-east5-b (v6e)")
    p.add_argument("--project", help="Google Cloud project (default: gcloud's configured one)")
    p.add_argument("--dry-run", action="store_true", help="print the exact commands and run nothing")
    return p


def hosts(accelerator_type: str) -> int:
    """How many VM hosts a slice has: one per 8 chips/cores (v5litepod-16, v6e-16, v5p-16 and v4-16: 2)."""
    match = re.fullmatch(r"(v\d+[a-z]*|v5litepod)-(\d+)", accelerator_type)
    if not match:
        raise SystemExit(f"--accelerator-type: expected a type like v5litepod-8 or v6e-16, got {accelerator_type!r}")
    return max(1, int(match.group(2)) // 8)


def _location(args: argparse.Namespace) -> list[str]:
    return [f"--zone={args.zone}"] + ([f"--project={args.project}"] if args.project else [])


def tpu_vm(args: argparse.Namespace, verb: str, *rest: str) -> list[str]:
    """`gcloud compute tpus tpu-vm VERB NAME --zone=... [REST]`."""
    return ["gcloud", "compute", "tpus", "tpu-vm", verb, args.name, *_location(args), *rest]


def ssh(args: argparse.Namespace, worker: str, command: str) -> list[str]:
    """Runs a shell `command` on one host (`0`) or on every host of the slice (`all`)."""
    return tpu_vm(args, "ssh", f"--worker={worker}", f"--command={command}")


def scp(args: argparse.Namespace, worker: str, source: str, target: str, recurse: bool = False) -> list[str]:
    """`gcloud compute tpus tpu-vm scp`; a remote path is written `NAME:path`."""
    return ["gcloud", "compute", "tpus", "tpu-vm", "scp", *(["--recurse"] if recurse else []), source, target,
            *_location(args), f"--worker={worker}"]  # fmt: skip


def execute(commands: Sequence[Sequence[str]], dry_run: bool) -> None:
    """Runs the commands in order, stopping at the first failure; with `dry_run`, prints them only."""
    for command in commands:
        line = shlex.join(command)
        if dry_run:
            print(line)
            continue
        print(f"+ {line}", file=sys.stderr)
        result = subprocess.run(command)
        if result.returncode != 0:
            raise SystemExit(f"failed ({result.returncode}): {line}")
