"""Checks that Keras 3 runs on the TensorFlow backend before anything else is imported."""

from __future__ import annotations

import keras


def check_backend() -> None:
    """Raises ImportError with what to do when Keras is not 3.x on TensorFlow."""
    major = int(keras.__version__.split(".")[0])
    if major < 3:
        raise ImportError(
            f"tfmtl needs Keras 3 (found keras {keras.__version__}); run: pip install 'keras>=3' "
            "and do not switch TensorFlow back to legacy Keras 2"
        )
    backend = keras.config.backend()
    if backend != "tensorflow":
        raise ImportError(
            f"tfmtl needs the TensorFlow backend of Keras, but Keras is using {backend!r}; "
            "set the environment variable KERAS_BACKEND=tensorflow (or \"backend\": \"tensorflow\" "
            "in ~/.keras/keras.json) before importing keras"
        )
