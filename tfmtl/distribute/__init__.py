"""Scale-out on `tf.distribute`: strategies by name, distributed input, fault tolerance, mixed precision.

Example:

```python
import tfmtl
strategy = tfmtl.distribute.strategy("auto")          # TPU, several workers, several GPUs, or one device
with strategy.scope(), tfmtl.distribute.dtype_policy("bf16"):
    model = tfmtl.zoo.MMoE(spec, tasks)
    model.compile()
train = tfmtl.distribute.distributed_dataset(strategy, df, spec, tasks, global_batch_size=1024, shuffle=True, seed=1)
model.fit(train, epochs=2, callbacks=[tfmtl.distribute.BackupAndRestore("backup")])
```
"""

from tfmtl.distribute.backup import BackupAndRestore
from tfmtl.distribute.embedding import SparseCoreEmbedding, embedding_backend, embedding_table, sparsecore_tables
from tfmtl.distribute.input import distributed_dataset
from tfmtl.distribute.mixed_precision import POLICIES, dtype_policy, policy_name
from tfmtl.distribute.strategies import STRATEGIES, describe, is_chief, num_workers, strategy
from tfmtl.distribute.tfrecord import read_tfrecords, write_tfrecords

__all__ = [
    "POLICIES",
    "STRATEGIES",
    "BackupAndRestore",
    "SparseCoreEmbedding",
    "describe",
    "distributed_dataset",
    "dtype_policy",
    "embedding_backend",
    "embedding_table",
    "is_chief",
    "num_workers",
    "policy_name",
    "read_tfrecords",
    "sparsecore_tables",
    "strategy",
    "write_tfrecords",
]
