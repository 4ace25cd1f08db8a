"""How `tfmtl train` (and later `tfmtl tune`) runs on tf.distribute: the flags' shared logic."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import pandas as pd
import tensorflow as tf

from tfmtl import distribute
from tfmtl.data import dataset, write_atomically
from tfmtl.zoo import MultiTaskModel


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Adds `--strategy`, `--tpu`, `--mixed-precision` and `--backup-dir` to a command."""
    parser.add_argument("--strategy", default="auto", metavar="{" + ",".join(distribute.STRATEGIES) + "}",
                        help="tf.distribute strategy (default auto: TPU, several TF_CONFIG workers, several GPUs, "
                        "else one device); --batch-size is the global batch of one step")  # fmt: skip
    parser.add_argument("--tpu", help="TPU name or address for --strategy tpu (default: $TPU_NAME or this TPU VM)")
    parser.add_argument("--mixed-precision", default="off", metavar="{" + ",".join(distribute.POLICIES) + "}",
                        help="off, bf16 (TPU/CPU/recent GPUs) or fp16 (GPU, with loss scaling)")  # fmt: skip
    parser.add_argument("--backup-dir", help="fault-tolerance backups, on storage every worker sees "
                        "(default with several workers: OUT/backup)")  # fmt: skip


@dataclasses.dataclass
class ScaleOut:
    """The `--strategy`, `--tpu`, `--mixed-precision` and `--backup-dir` of one run."""

    strategy: str = "auto"
    tpu: str | None = None
    mixed_precision: str = "off"
    backup_dir: str | None = None
    distribution: Any = dataclasses.field(default=None, init=False)
    resumed_from_epoch: int = dataclasses.field(default=0, init=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ScaleOut":
        return cls(args.strategy, args.tpu, args.mixed_precision, args.backup_dir)

    def start(self, global_batch_size: int) -> tf.distribute.Strategy:
        """Resolves the strategy, checks the precision mode, and says what the batch size means."""
        self.distribution = distribute.strategy(self.strategy, tpu=self.tpu)
        policy = distribute.policy_name(self.mixed_precision)
        print(distribute.describe(self.distribution, global_batch_size) + f"; dtype policy {policy}")
        return self.distribution

    @contextlib.contextmanager
    def building(self, global_batch_size: int, learning_rate: float) -> Iterator[None]:
        """Model construction and compile: in the strategy's scope, under the precision policy."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(self.distribution.scope())
            stack.enter_context(distribute.dtype_policy(self.mixed_precision))
            if distribute.embedding_backend(self.distribution) == "sparsecore":
                per_host = global_batch_size // distribute.num_workers(self.distribution)
                stack.enter_context(distribute.sparsecore_tables(per_host, keras.optimizers.Adam(learning_rate)))
            yield

    @property
    def workers(self) -> int:
        return distribute.num_workers(self.distribution)

    def callbacks(self, out_dir: Path) -> list[keras.callbacks.Callback]:
        """A `BackupAndRestore` with several workers or a `--backup-dir`; notes the epoch it resumes from."""
        if self.workers == 1 and not self.backup_dir:
            return []
        backup = distribute.BackupAndRestore(self.backup_dir or str(out_dir / "backup"))
        state = backup.restored_state()
        self.resumed_from_epoch = int(state["epoch"]) if state else 0
        if state:
            print(f"resuming from the backup in {backup.backup_dir}: epoch {self.resumed_from_epoch + 1} next")
        return [backup]

    def save(self, model: keras.Model, path: Path) -> bool:
        """Saves the model atomically on the chief (True); other workers save to a discarded folder (False)."""
        if distribute.is_chief(self.distribution):
            write_atomically(path, model.save)
            return True
        private = tempfile.mkdtemp(prefix="tfmtl-worker-")
        try:
            model.save(str(Path(private) / path.name))
        finally:
            shutil.rmtree(private, ignore_errors=True)
        return False

    def describe_run(self) -> dict[str, Any]:
        """What metrics.json records about where the run ran."""
        return {
            "strategy": type(self.distribution).__name__,
            "workers": self.workers,
            "replicas": self.distribution.num_replicas_in_sync,
            "mixed_precision": self.mixed_precision,
            "resumed_from_epoch": self.resumed_from_epoch,
        }


def training_data(
    distribution: tf.distribute.Strategy, train: pd.DataFrame, model: MultiTaskModel, global_batch_size: int, seed: int
) -> Any:
    """`model`'s shuffled training batches: a plain pipeline on one device, split per replica otherwise."""
    features, tasks, fused = model.feature_spec, model.tasks, model.fused_embeddings
    if distribution.num_replicas_in_sync == 1 and distribute.num_workers(distribution) == 1:
        return dataset(train, features, tasks, batch_size=global_batch_size, shuffle=True, seed=seed, fused=fused)
    return distribute.distributed_dataset(
        distribution, train, features, tasks, global_batch_size=global_batch_size, shuffle=True, seed=seed,
        drop_remainder=isinstance(distribution, tf.distribute.TPUStrategy), fused=fused,
    )  # fmt: skip
