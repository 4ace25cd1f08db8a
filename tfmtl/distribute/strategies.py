"""Which `tf.distribute` strategy to train under, by name: what `--strategy` resolves to."""

from __future__ import annotations

import glob
import json
import os
from typing import Any

import tensorflow as tf

from tfmtl.errors import InputError

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker", "tpu")


def tf_config() -> dict[str, Any]:
    """The parsed `TF_CONFIG` environment variable (`{}` when unset)."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"TF_CONFIG: not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise InputError("TF_CONFIG: expected a JSON object with 'cluster' and 'task'")
    return config


def cluster_size() -> int:
    """How many workers (chief included) `TF_CONFIG` names; 0 without one."""
    cluster = tf_config().get("cluster", {})
    return sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))


def local_tpu_devices() -> list[str]:
    """TPU chips attached to this machine: `/dev/accel*` (v2-v4) or `/dev/vfio/<n>` (v5e and later)."""
    return sorted(glob.glob("/dev/accel*") + [p for p in glob.glob("/dev/vfio/*") if os.path.basename(p).isdigit()])


def tpu_address(tpu: str | None = None) -> str | None:
    """The TPU to connect to: `tpu`, else `$TPU_NAME`, else `"local"` on a TPU VM, else None."""
    if tpu:
        return tpu
    if os.environ.get("TPU_NAME"):
        return os.environ["TPU_NAME"]
    return "local" if local_tpu_devices() else None


def auto_choice(tpu: str | None = None) -> str:
    """What `auto` means here: a TPU if one is resolvable, several workers, several GPUs, else one device."""
    if tpu_address(tpu) is not None:
        return "tpu"
    if cluster_size() > 1:
        return "multi-worker"
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return "mirrored"
    return "one-device"


def strategy(name: str = "auto", *, tpu: str | None = None, devices: list[str] | None = None) -> tf.distribute.Strategy:
    """Returns the `tf.distribute.Strategy` called `name`; build and compile models in its `scope()`.

    - `auto`: `tpu` when a TPU is resolvable (`tpu=`, `$TPU_NAME`, or a TPU VM's own
      chips), `multi-worker` when `TF_CONFIG` names several workers, `mirrored` with
      several GPUs, else `one-device`.
    - `one-device`: TensorFlow's default strategy (what runs without any strategy).
    - `mirrored`: `MirroredStrategy` over this machine's GPUs (or `devices`).
    - `multi-worker`: `MultiWorkerMirroredStrategy` over the workers `TF_CONFIG` names;
      every worker runs the same program and the process blocks until all are up.
    - `tpu`: `TPUStrategy`; without a TPU it fails at once with `InputError`.

    Example:

    ```python
    import tfmtl
    with tfmtl.distribute.strategy("auto").scope():
        model = tfmtl.zoo.MMoE(spec, tasks)
        model.compile()
    ```
    """
    if name not in STRATEGIES:
        raise InputError(f"--strategy: unknown strategy {name!r}, expected one of {', '.join(STRATEGIES)}")
    if name == "auto":
        name = auto_choice(tpu)
    if name == "one-device":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi-worker":
        tf_config()  # a malformed TF_CONFIG is the user's error, not a TensorFlow traceback
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tpu_strategy(tpu)


def tpu_strategy(tpu: str | None = None) -> tf.distribute.TPUStrategy:
    """Connects to and initialises the TPU system; any failure is one `InputError` line, never a hang."""
    address = tpu_address(tpu)
    if address is None:
        raise InputError(
            "--strategy tpu: no TPU found (no /dev/accel* or /dev/vfio TPU device on this machine and "
            "TPU_NAME is not set); run on a Cloud TPU VM (the kit in tfmtl's source repository, tpu/README.md) "
            "or use --strategy auto"
        )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        if address != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, OSError, RuntimeError, tf.errors.OpError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise InputError(f"--strategy tpu: could not initialise TPU {address!r}: {first_line}") from None
    # Ops without a TPU kernel (string preprocessing of list features) run on the host.
    tf.config.set_soft_device_placement(True)
    return tf.distribute.TPUStrategy(resolver)


def num_workers(distribution: tf.distribute.Strategy) -> int:
    """How many processes (workers or TPU hosts) run the program under `distribution`.

    Example:

    ```python
    num_workers(tf.distribute.get_strategy())   # 1
    ```
    """
    extended = distribution.extended
    if isinstance(distribution, tf.distribute.TPUStrategy):
        return int(extended.num_hosts)
    return int(getattr(extended, "_num_workers", 1))


def is_chief(distribution: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes shared outputs (models, metrics, backups): true but on non-chief workers.

    Example:

    ```python
    is_chief()   # True in a single process
    ```
    """
    return bool((distribution or tf.distribute.get_strategy()).extended.should_checkpoint)


def describe(distribution: tf.distribute.Strategy, global_batch_size: int) -> str:
    """One line saying what runs where and what the batch size means, printed when training starts.

    Example:

    ```python
    describe(tf.distribute.get_strategy(), 1024)
    # 'strategy _DefaultDistributionStrategy: 1 worker(s), 1 replica(s) in sync; batch size 1024 is ...'
    ```
    """
    replicas = distribution.num_replicas_in_sync
    workers = num_workers(distribution)
    per_replica, rest = divmod(global_batch_size, replicas)
    split = f"{per_replica} per replica" if not rest else f"{per_replica} or {per_replica + 1} per replica"
    return (
        f"strategy {type(distribution).__name__}: {workers} worker(s), {replicas} replica(s) in sync; "
        f"batch size {global_batch_size} is the global batch of one step ({split})"
    )
