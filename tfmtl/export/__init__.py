"""Export to TF Serving: SavedModels with named raw-feature and tf.Example signatures."""

from tfmtl.export.archive import SERVING_DEFAULT, TF_EXAMPLE, TF_EXAMPLE_INPUT, serving_archive
from tfmtl.export.names import signature_name
from tfmtl.export.saved_model import export_saved_model
from tfmtl.export.serving_inputs import MISSING_INT64, input_signature, missing_value
from tfmtl.export.tf_example import parse_examples, serialize_examples

__all__ = [
    "MISSING_INT64",
    "SERVING_DEFAULT",
    "TF_EXAMPLE",
    "TF_EXAMPLE_INPUT",
    "export_saved_model",
    "input_signature",
    "missing_value",
    "parse_examples",
    "serialize_examples",
    "serving_archive",
    "signature_name",
]
