"""tfmtl: multi-task learning for recommender systems on Keras 3 and TensorFlow.

Example:

```python
import keras, tfmtl
from tfmtl.zoo import MMoE
train, test = tfmtl.datasets.census_income()
tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
features = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
model = MMoE(features, tasks)
model.compile(optimizer=keras.optimizers.Adam(1e-3))
model.fit(tfmtl.data.dataset(train, features, tasks, batch_size=1024, shuffle=True), epochs=2)
```
"""

from tfmtl._backend import check_backend

check_backend()

from tfmtl import data, datasets, distribute, export, layers, weighting, zoo  # noqa: E402
from tfmtl.errors import InputError  # noqa: E402
from tfmtl.features import FeatureSpec  # noqa: E402
from tfmtl.tasks import Task  # noqa: E402

__version__ = "0.1.0"

__all__ = ["FeatureSpec", "InputError", "Task", "data", "datasets", "distribute", "export", "layers", "weighting", "zoo"]
