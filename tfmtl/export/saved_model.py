"""export_saved_model: a trained tfmtl model to a TF Serving model directory."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from tfmtl.data import write_json
from tfmtl.errors import InputError
from tfmtl.export.archive import serving_archive
from tfmtl.export.description import DESCRIPTION_FILE, describe_signatures
from tfmtl.export.model_directory import write_version
from tfmtl.export.warmup import WARMUP_FILE, typical_inputs, write_warmup_requests
from tfmtl.zoo.multi_task_model import MultiTaskModel

WARMUP_ROWS = 8


def export_saved_model(
    model: MultiTaskModel,
    path: str | os.PathLike,
    *,
    version: int | None = None,
    overwrite: bool = False,
    warmup_data: pd.DataFrame | None = None,
    verbose: bool = False,
) -> Path:
    """Writes `model` as version `version` of the TF Serving model directory `path`.

    The version folder `path/<version>/` holds the SavedModel (`saved_model.pb`,
    `variables/`, `assets/`) with two signatures: `serving_default` takes one named
    input per raw feature in its raw dtype, `tf_example` takes serialized
    `tf.Example`s; both return every model output by name. `assets.extra/` holds TF
    Serving warm-up requests built from the first rows of `warmup_data` (from the
    training statistics when it is not given) and `tfmtl_signatures.json`, which
    says which feature or task each input and output is. Feature and output names
    are served with every character other than a letter, digit or `_` replaced by `_`.

    Args:
        model: a built tfmtl model (every zoo model is built when constructed).
        path: the model directory (TF Serving's `--model_base_path`).
        version: the version number; default: one more than the highest there, or 1.
        overwrite: replace an existing non-empty version folder.
        warmup_data: a DataFrame of raw feature columns, e.g. the training data.
        verbose: print the signatures once written.

    Returns:
        The version folder.

    Example:

    ```python
    import tfmtl
    train, _ = tfmtl.datasets.census_income()
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    model = tfmtl.zoo.MMoE(tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"]), tasks)
    export_saved_model(model, "serving/mmoe", warmup_data=train)   # serving/mmoe/1/
    ```
    """
    if not isinstance(model, MultiTaskModel):
        raise InputError(f"model: expected a tfmtl MultiTaskModel, got {type(model).__name__}")
    if not model.built:
        raise InputError(f"model: this {type(model).__name__} has not been built; call model.build() before exporting")
    spec = model.feature_spec
    if warmup_data is None:
        warmup_inputs = typical_inputs(spec, WARMUP_ROWS)
    else:
        if not isinstance(warmup_data, pd.DataFrame) or len(warmup_data) == 0:
            raise InputError("warmup_data: expected a non-empty pandas DataFrame of raw feature columns")
        try:
            warmup_inputs = spec.input_arrays(warmup_data.head(WARMUP_ROWS))
        except InputError as error:
            raise InputError(f"warmup_data: {error}") from None

    def write(folder: str) -> None:
        archive, outputs = serving_archive(model)
        archive.write_out(folder, verbose=verbose)
        write_warmup_requests(Path(folder) / WARMUP_FILE, spec, warmup_inputs)
        write_json(Path(folder) / DESCRIPTION_FILE, describe_signatures(spec, model.tasks, outputs))

    return write_version(path, version, write, overwrite=overwrite)
