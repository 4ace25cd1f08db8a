"""BackupAndRestore for multi-worker runs: atomic backups, written by the chief, read by every worker."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from typing import Any

import keras
import tensorflow as tf

from tfmtl.data.files import write_atomically, write_json
from tfmtl.distribute.strategies import is_chief

STATE_FILE = "training_state.json"
WEIGHTS_FILE = "model.weights.h5"


class BackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` whose backups cannot be half-written or raced.

    Keras' callback writes the weights and then the epoch counter in place, from every
    worker, into the same folder: a worker killed mid-write leaves a weights file
    that does not load or that does not match the counter. Here each backup is a new
    folder `backup-<epoch>-<batch>-<id>/` written under a temporary name and renamed when
    complete, and only then does `training_state.json` (also replaced atomically)
    point at it; older backups are removed after that. Only the chief writes to
    `backup_dir`; the other workers save to a private temporary folder (so every
    worker takes part in the same saving steps) and delete it. On restart every
    worker restores the backup the state file names and training continues at the
    next epoch: the epoch counter goes on and nothing before the backup is redone.

    `backup_dir` must be storage all workers see (a shared disk; a `gs://` bucket
    works as well: objects are written whole). Like Keras', the backup is deleted
    when `fit` completes unless `delete_checkpoint=False`.

    Example:

    ```python
    backup = tfmtl.distribute.BackupAndRestore("gs://bucket/run-1/backup")
    model.fit(train, epochs=10, callbacks=[backup])   # rerun the same command after a failure
    ```
    """

    def __init__(self, backup_dir: str, save_freq: str | int = "epoch", delete_checkpoint: bool = True) -> None:
        super().__init__(backup_dir, save_freq=save_freq, double_checkpoint=False, delete_checkpoint=delete_checkpoint)
        self._state_path = os.path.join(backup_dir, STATE_FILE)

    def restored_state(self) -> dict[str, Any] | None:
        """The committed backup: `{"epoch", "batch", "backup"}`, or None when there is none."""
        if not tf.io.gfile.exists(self._state_path):
            return None
        with tf.io.gfile.GFile(self._state_path) as f:
            return json.load(f)

    def _load_model(self) -> None:
        if not self.model.built:
            raise ValueError("BackupAndRestore: build the model before fit()")
        state = self.restored_state()
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["backup"], WEIGHTS_FILE))
        self.model._initial_epoch = state["epoch"]  # how Keras' own callback resumes fit

    def _save_model(self) -> None:
        # A fresh name each time: a leftover of a save that never committed is never reused.
        name = f"backup-{self._current_epoch:05d}-{self._last_batch_seen:07d}-{uuid.uuid4().hex[:8]}"
        if not is_chief(self.model.distribute_strategy):
            private = tempfile.mkdtemp(prefix="tfmtl-backup-")
            try:
                self.model.save_weights(os.path.join(private, WEIGHTS_FILE))
            finally:
                shutil.rmtree(private, ignore_errors=True)
            return
        _write_folder(os.path.join(self.backup_dir, name), self.model)
        previous = self.restored_state()
        _write_state(self._state_path, {"epoch": self._current_epoch, "batch": self._last_batch_seen, "backup": name})
        if previous and previous["backup"] != name:
            tf.io.gfile.rmtree(os.path.join(self.backup_dir, previous["backup"]))

    def on_train_end(self, logs: Any = None) -> None:
        if self.delete_checkpoint and is_chief(self.model.distribute_strategy) and tf.io.gfile.exists(self.backup_dir):
            tf.io.gfile.rmtree(self.backup_dir)


def _is_local(path: str) -> bool:
    return "://" not in path


def _write_folder(path: str, model: keras.Model) -> None:
    def save(temporary: str) -> None:
        os.makedirs(temporary)
        model.save_weights(os.path.join(temporary, WEIGHTS_FILE))

    if _is_local(path):
        write_atomically(path, save)
        return
    # Object stores have no rename: write locally, then upload; each object appears whole.
    local = tempfile.mkdtemp(prefix="tfmtl-backup-")
    try:
        save(os.path.join(local, "backup"))
        tf.io.gfile.makedirs(path)
        tf.io.gfile.copy(os.path.join(local, "backup", WEIGHTS_FILE), os.path.join(path, WEIGHTS_FILE), overwrite=True)
    finally:
        shutil.rmtree(local, ignore_errors=True)


def _write_state(path: str, state: dict[str, Any]) -> None:
    if _is_local(path):
        write_json(path, state)
        return
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps(state, indent=2) + "\n")
