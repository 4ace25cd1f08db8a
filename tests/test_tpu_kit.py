"""The Cloud TPU VM launch kit (tpu/): every script's --dry-run prints the exact gcloud commands.

gcloud is never run: the scripts are started with a PATH that has no gcloud, and
--dry-run only prints.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

TPU = Path(__file__).resolve().parents[1] / "tpu"
V5E = ["--name", "mtl-v5e", "--zone", "us-west4-a"]
V6E_POD = ["--name", "mtl-v6e", "--zone", "us-east5-b"]
TRAIN_ARGS = ["--", "--train-data", "tfmtl-data/train.parquet", "--test-data", "tfmtl-data/test.parquet",
              "--task", "income:binary", "--task", "marital:binary", "--mixed-precision", "bf16"]  # fmt: skip


def dry_run(script: str, *args: str) -> list[list[str]]:
    """The commands `tpu/<script>` prints with --dry-run, each split as a shell would."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}  # no gcloud reachable
    # --dry-run first: whatever follows `--` goes to tfmtl train.
    result = subprocess.run([sys.executable, str(TPU / script), "--dry-run", *args], capture_output=True, text=True,
                            env=env, timeout=60, cwd=TPU.parent)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]


def test_create_v5e_single_host_and_v6e_pod_slice():
    assert dry_run("create_vm.py", *V5E, "--accelerator-type", "v5litepod-8", "--runtime-version",
                   "v2-alpha-tpuv5-lite") == [[  # fmt: skip
        "gcloud", "compute", "tpus", "tpu-vm", "create", "mtl-v5e", "--zone=us-west4-a",
        "--accelerator-type=v5litepod-8", "--version=v2-alpha-tpuv5-lite"]]  # fmt: skip
    assert dry_run("create_vm.py", *V6E_POD, "--project", "my-project", "--accelerator-type", "v6e-16",
                   "--runtime-version", "v2-alpha-tpuv6e", "--spot") == [[  # fmt: skip
        "gcloud", "compute", "tpus", "tpu-vm", "create", "mtl-v6e", "--zone=us-east5-b", "--project=my-project",
        "--accelerator-type=v6e-16", "--version=v2-alpha-tpuv6e", "--spot"]]  # fmt: skip


def test_install_reaches_every_host():
    build, copy, setup = dry_run("install.py", *V6E_POD)
    assert build == ["python", "-m", "pip", "wheel", "--no-deps", "-w", "dist", "."]
    wheel = copy[-3].split(":")[1]
    assert copy[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "scp", f"dist/{wheel}"] and "--worker=all" in copy
    assert setup[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "mtl-v6e"] and "--worker=all" in setup
    remote = setup[-1].removeprefix("--command=")
    assert "python3.11 -m venv tfmtl-venv" in remote and f"tfmtl-venv/bin/pip install -q '{wheel}[tpu]'" in remote
    assert "tensorflow-tpu -f https://storage.googleapis.com/libtpu-tf-releases/index.html" in remote


def test_train_on_one_host_and_on_every_host_of_a_pod_slice():
    single = dry_run("train.py", *V5E, "--accelerator-type", "v5litepod-8", "--bucket", "gs://b/mtl", "--run", "mmoe",
                     *TRAIN_ARGS)  # fmt: skip
    (command,) = single
    assert command[:7] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "mtl-v5e", "--zone=us-west4-a"]
    assert command[7] == "--worker=0"
    remote = shlex.split(command[8].removeprefix("--command="))
    train = remote[remote.index("nohup") + 1 : remote.index(">")]
    assert train[:6] == ["tfmtl-venv/bin/tfmtl", "train", "--strategy", "tpu", "--tpu", "local"]
    assert train[6:8] == ["--out", "tfmtl-runs/mmoe"] and train[8:] == TRAIN_ARGS[1:]
    assert "gs://b/mtl/data/*" in remote

    (pod,) = dry_run("train.py", *V6E_POD, "--accelerator-type", "v6e-16", "--bucket", "gs://b/mtl", *TRAIN_ARGS)
    assert pod[7] == "--worker=all"
    remote = shlex.split(pod[8].removeprefix("--command="))
    assert remote[remote.index("--tpu") + 1] == "mtl-v6e"  # a slice is resolved by name from every host
    (first,) = dry_run("train.py", *V6E_POD, "--accelerator-type", "v6e-16", "--bucket", "gs://b/mtl",
                       "--workers", "first", *TRAIN_ARGS)  # fmt: skip
    assert first[7] == "--worker=0"


def test_full_run_in_order_and_the_vm_is_deleted_last():
    commands = dry_run("full_run.py", *V6E_POD, "--accelerator-type", "v6e-16", "--runtime-version",
                       "v2-alpha-tpuv6e", "--bucket", "gs://b/mtl", "--files", "train.parquet", "test.parquet",
                       "--run", "mmoe", *TRAIN_ARGS)  # fmt: skip
    verbs = [c[4] if c[:4] == ["gcloud", "compute", "tpus", "tpu-vm"] else " ".join(c[:3]) for c in commands]
    assert verbs == ["create", "python -m pip", "scp", "ssh", "gcloud storage cp", "ssh", "ssh", "ssh",
                     "mkdir -p runs", "scp", "scp", "delete"]  # fmt: skip
    assert commands[4][-1] == "gs://b/mtl/data/" and commands[4][-3:-1] == ["train.parquet", "test.parquet"]
    assert "tfmtl-venv/bin/tfmtl export --model-path tfmtl-runs/mmoe --out tfmtl-export/mmoe" in commands[7][-1]
    assert commands[-1] == ["gcloud", "compute", "tpus", "tpu-vm", "delete", "mtl-v6e", "--zone=us-east5-b", "--quiet"]


def test_the_wait_ends_when_training_ends_and_fails_without_metrics(tmp_path):
    # The remote commands, run here by bash: the detached "training" is a short sleep.
    (start,) = dry_run("train.py", *V5E, "--accelerator-type", "v5litepod-8", "--bucket", "gs://b/mtl", "--run", "r")
    remote = start[8].removeprefix("--command=")
    detached = remote[remote.index("nohup") :].replace("tfmtl-venv/bin/tfmtl train", "sleep 1; true", 1)
    run = dry_run("full_run.py", *V5E, "--accelerator-type", "v5litepod-8", "--runtime-version", "v",
                  "--bucket", "gs://b/mtl", "--files", "train.parquet", "--run", "r")  # fmt: skip
    assert run[5][-1] == start[-1]  # the step after the start of training is the wait
    wait = run[6][-1].removeprefix("--command=").replace("sleep 30", "sleep 0.2")
    for metrics in (False, True):
        if metrics:
            (tmp_path / "tfmtl-runs" / "r").mkdir(parents=True)
            (tmp_path / "tfmtl-runs" / "r" / "metrics.json").write_text("{}")
        subprocess.run(["bash", "-c", detached], cwd=tmp_path, check=True, timeout=30)
        result = subprocess.run(["bash", "-c", wait], cwd=tmp_path, capture_output=True, text=True, timeout=30)
        assert result.returncode == (0 if metrics else 1), result.stderr
        assert metrics or "training ended without tfmtl-runs/r/metrics.json" in result.stderr


def test_logs_and_bad_arguments():
    assert dry_run("logs.py", *V5E) == [["gcloud", "compute", "tpus", "tpu-vm", "ssh", "mtl-v5e", "--zone=us-west4-a",
                                         "--worker=0", "--command=tail -n 200 -F tfmtl-train.log"]]  # fmt: skip
    for script, args, message in [
        ("create_vm.py", ["--accelerator-type", "tpu-8", "--runtime-version", "x"], "--accelerator-type"),
        ("stage_data.py", ["--bucket", "my-bucket", "--files", "a.csv"], "--bucket: expected gs://"),
    ]:
        result = subprocess.run([sys.executable, str(TPU / script), *V5E, *args, "--dry-run"], capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        assert result.returncode != 0 and message in result.stderr


@pytest.mark.parametrize("accelerator, hosts", [("v5litepod-8", 1), ("v5litepod-16", 2), ("v6e-8", 1), ("v6e-64", 8)])
def test_hosts_per_slice(accelerator, hosts):
    sys.path.insert(0, str(TPU))
    try:
        import kit
    finally:
        sys.path.remove(str(TPU))
    assert kit.hosts(accelerator) == hosts
