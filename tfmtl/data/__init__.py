"""Input pipelines (pandas to tf.data) and file reading and writing."""

from tfmtl.data.files import read_table, write_atomically, write_json
from tfmtl.data.pipeline import dataset, model_arrays

__all__ = ["dataset", "model_arrays", "read_table", "write_atomically", "write_json"]
