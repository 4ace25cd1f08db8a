import numpy as np
import pandas as pd
import pytest

from tfmtl import InputError, Task
from tfmtl.tasks.report import format_table, per_task_metrics


def test_defaults_and_config_round_trip():
    task = Task("ctr", "binary")
    assert task.label == "ctr" and task.loss_weight == 1.0 and task.output_units == 1
    again = Task.from_config(task.get_config())
    assert again == task
    dept = Task("dept", "multiclass", classes=["a", "b", "c"])
    assert Task.from_config(dept.get_config()) == dept and dept.output_units == 3


def test_unknown_kind_is_a_clear_error():
    with pytest.raises(InputError, match=r"task 'x': unknown kind 'binomial', expected one of binary, regression"):
        Task("x", "binomial")


def test_binary_labels_must_be_zero_or_one():
    df = pd.DataFrame({"y": [0, 1, 5, 3]})
    with pytest.raises(InputError, match=r"task 'y': binary labels in column 'y' must be 0 or 1 .*found \[3.0, 5.0\]"):
        Task("y", "binary").label_values(df)


def test_missing_label_column_is_named():
    with pytest.raises(InputError, match=r"task 'ctr': label column 'clicked' is not in the data"):
        Task("ctr", "binary", label="clicked").label_values(pd.DataFrame({"x": [1]}))


def test_non_numeric_label_is_named():
    with pytest.raises(InputError, match=r"non-numeric value 'yes'"):
        Task("y", "regression").label_values(pd.DataFrame({"y": [1.5, "yes"]}, dtype=object))


def test_missing_labels_become_nan():
    values = Task("y", "binary").label_values(pd.DataFrame({"y": [0, np.nan, 1]}))
    assert values.dtype == np.float32 and np.isnan(values[1]) and values[2] == 1


def test_multiclass_classes_from_data_and_unknown_class():
    df = pd.DataFrame({"dept": ["b", "a", None, "c"]})
    task = Task("dept", "multiclass").with_classes_from(df)
    assert task.classes == ("a", "b", "c")
    values = task.label_values(df)
    assert values[0] == 1 and np.isnan(values[2])
    with pytest.raises(InputError, match=r"value 'z' that is not one of its 3 classes"):
        task.label_values(pd.DataFrame({"dept": ["z"]}))
    with pytest.raises(InputError, match=r"needs classes"):
        Task("dept", "multiclass").output_units


def test_sample_weight_column_checked():
    task = Task("y", "binary", sample_weight="w")
    np.testing.assert_allclose(task.weight_values(pd.DataFrame({"w": [1, 2]})), [1, 2])
    for bad in (-2, np.inf, np.nan):
        with pytest.raises(InputError, match=r"sample_weight column 'w' must be finite numbers >= 0"):
            task.weight_values(pd.DataFrame({"w": [1, bad]}))


def test_per_task_report():
    tasks = [Task("a_b", "binary"), Task("r", "regression")]
    logs = {"a_b_auc": 0.9, "a_b_logloss": 0.2, "a_b_loss": 0.2, "r_rmse": 1.5, "r_mae": 1.0, "loss": 3.0}
    grouped = per_task_metrics(tasks, logs)
    assert grouped == {"a_b": {"auc": 0.9, "logloss": 0.2}, "r": {"rmse": 1.5, "mae": 1.0}}
    table = format_table(grouped)
    assert table.splitlines()[1].split()[0] == "a_b" and "1.5000" in table


def test_binned_auc_equals_keras_auc_with_as_many_thresholds():
    import keras

    from tfmtl.tasks import BinnedAUC

    rng = np.random.default_rng(0)
    ours, keras_auc = BinnedAUC(num_bins=500), keras.metrics.AUC(num_thresholds=500)
    for _ in range(3):  # several updates accumulate
        labels = rng.integers(0, 2, 2000).astype("float32")
        scores = np.clip(rng.random(2000) * 0.6 + labels * 0.3, 0, 1).astype("float32")
        scores[:5], scores[5:10] = 0.0, 1.0  # both ends of the bins
        weights = rng.random(2000).astype("float32")
        weights[:40] = 0.0
        ours.update_state(labels, scores, weights)
        keras_auc.update_state(labels, scores, weights)
    assert float(ours.result()) == pytest.approx(float(keras_auc.result()), abs=1e-6)
    again = BinnedAUC.from_config(ours.get_config())
    assert (again.num_bins, again.name) == (500, ours.name)
    ours.reset_state()
    assert float(ours.result()) == 0.0
    with pytest.raises(ValueError, match="num_bins: expected an integer of at least 2, got 1"):
        BinnedAUC(num_bins=1)
