"""SavedModel export for TF Serving: signatures, numbers outside tfmtl, warm-up, errors, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import tfmtl
from tfmtl.cli.main import main
from tfmtl.export import MISSING_INT64, export_saved_model, signature_name
from tfmtl.export.names import signature_names
from tfmtl.zoo import MODELS, MultiTaskModel, SharedBottom

# Small versions of the zoo's models; a model not named here is built with its defaults.
MODEL_ARGS = {
    "shared-bottom": {"bottom_units": [16], "tower_units": [8]},
    "mmoe": {"num_experts": 3, "expert_units": [16], "tower_units": [8]},
}
RENAMED = {"education": "Education Level", "class_worker": "class worker/type"}


def serving_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Census rows with names that are not valid signature names and a list feature."""
    df = df.rename(columns=RENAMED)
    df["codes"] = df["major_ind_code"].astype(str) + "|" + df["major_occ_code"].astype(str)
    return df


def odd_rows(test: pd.DataFrame, spec: tfmtl.FeatureSpec) -> pd.DataFrame:
    """Rows a server must answer like training would: unseen, empty and missing values."""
    odd = test.head(3).copy().reset_index(drop=True)
    for feature in spec:
        if feature.kind == "numeric":
            odd[feature.name] = np.nan
        elif feature.dtype == "int64":
            odd[feature.name] = [999_999, MISSING_INT64, 0]
        else:
            odd[feature.name] = odd[feature.name].astype(object)
            odd.loc[0, feature.name] = "a value never seen in training"
            odd.loc[1, feature.name] = ""
    odd.loc[2, "codes"] = "unseen|also unseen|"
    return odd


@pytest.fixture(scope="module")
def serving_setup(census):
    train, test = (serving_frame(df) for df in census)
    train = train.head(800).copy()
    train.loc[::7, "age"] = np.nan  # so the model has a "was missing" indicator
    tasks = [
        tfmtl.Task("income", "binary"),
        tfmtl.Task("never married", "binary", label="marital"),
        tfmtl.Task("weeks", "regression", label="weeks_worked"),
        tfmtl.Task("race", "multiclass").with_classes_from(train),
    ]
    spec = tfmtl.FeatureSpec.infer(
        train, exclude=["income", "marital", "weeks_worked", "race"], lists=["codes"], hash_threshold=30
    )
    assert spec.of_kind("hashed") and spec.of_kind("list") and spec["age"].missing_indicator
    test = pd.concat([test.head(40), odd_rows(test, spec)], ignore_index=True)
    return train, test, spec, tasks


@pytest.fixture(scope="module")
def exported(serving_setup, tmp_path_factory):
    """Every zoo model exported with `model.export`, and its predictions.

    SharedBottom and MMoE are trained briefly first; the others keep their initial
    weights, which the export treats no differently (and saves a fit per model).
    """
    train, test, spec, tasks = serving_setup
    base = tmp_path_factory.mktemp("exports")
    out = {}
    for name, cls in MODELS.items():
        model = cls(spec, tasks, **MODEL_ARGS.get(name, {}))
        if name in MODEL_ARGS:
            model.compile(optimizer="adam")
            model.fit(tfmtl.data.dataset(train, spec, tasks, batch_size=256), epochs=1, verbose=0)
        version = model.export(base / name, warmup_data=train)
        predictions = model.predict(tfmtl.data.dataset(test, spec, batch_size=64), verbose=0)
        out[name] = {"model": model, "version": version, "predictions": predictions}
    return out


# Runs in a fresh Python in which tfmtl cannot be imported: only TensorFlow, the
# SavedModel and TF Serving's protos, as on a serving host.
OUTSIDE_TFMTL = r'''
import importlib.abc, json, math, sys

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tfmtl":
            raise ImportError(f"{name} is blocked in this process")

sys.meta_path.insert(0, Blocked())
try:
    import tfmtl  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("tfmtl could be imported")

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2


def example(described, row, present):
    ex = tf.train.Example()
    for input_name, info in described.items():
        value = row[input_name]
        if input_name not in present:
            continue
        if info["kind"] == "list":
            values = [v.encode() for v in value.split(info["separator"]) if v]
        elif info["dtype"] == "float32":
            values = [] if math.isnan(value) else [value]
        elif info["dtype"] == "int64":
            values = [value]
        else:
            values = [value.encode()] if value != "" else []
        if not values:
            continue
        field = ex.features.feature[info["feature"]]
        {"float32": field.float_list, "int64": field.int64_list}.get(info["dtype"], field.bytes_list).value.extend(values)
    return ex.SerializeToString()


def max_diff(a, b):
    return max(float(np.max(np.abs(a[k].numpy() - b[k].numpy()))) for k in a)


results = {}
for name, job in json.load(open(sys.argv[1])).items():
    version = job["version"]
    loaded = tf.saved_model.load(version)
    raw_fn, example_fn = loaded.signatures["serving_default"], loaded.signatures["tf_example"]
    specs = raw_fn.structured_input_signature[1]
    described = json.load(open(version + "/assets.extra/tfmtl_signatures.json"))
    described_inputs = described["signatures"]["serving_default"]["inputs"]
    inputs = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in job["inputs"].items()}
    raw = raw_fn(**inputs)

    rows = [{k: v[i] for k, v in job["inputs"].items()} for i in range(len(job["inputs"]["age"]))]
    every = set(described_inputs)
    from_examples = example_fn(inputs=tf.constant([example(described_inputs, row, every) for row in rows]))
    # Every other feature left out of the tf.Example versus sent as its documented missing value.
    present = set(sorted(every)[::2])
    partial = example_fn(inputs=tf.constant([example(described_inputs, row, present) for row in rows]))
    defaults = {
        k: tf.fill(tf.shape(v), tf.constant(float("nan") if info["missing_value"] == "NaN" else info["missing_value"], v.dtype))
        if k not in present else v
        for (k, v), info in ((item, described_inputs[item[0]]) for item in inputs.items())
    }
    with_defaults = raw_fn(**defaults)

    warmup, matched, signatures = 0, True, set()
    for record in tf.data.TFRecordDataset(version + "/assets.extra/tf_serving_warmup_requests"):
        request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
        fn = loaded.signatures[request.model_spec.signature_name]
        expected = fn.structured_input_signature[1]
        matched &= set(request.inputs) == set(expected) and all(
            tf.dtypes.as_dtype(request.inputs[k].dtype) == expected[k].dtype for k in expected
        )
        fn(**{k: tf.constant(tf.make_ndarray(v), dtype=expected[k].dtype) for k, v in request.inputs.items()})
        warmup += 1
        signatures.add(request.model_spec.signature_name)

    results[name] = {
        "inputs": {k: s.dtype.name for k, s in specs.items()},
        "outputs": {k: t.shape.as_list() for k, t in raw_fn.structured_outputs.items()},
        "example_outputs": sorted(example_fn.structured_outputs),
        "described_inputs": sorted(described_inputs),
        "described_outputs": described["outputs"],
        "raw": {k: v.numpy().tolist() for k, v in raw.items()},
        "example_max_diff": max_diff(raw, from_examples),
        "missing_max_diff": max_diff(with_defaults, partial),
        "warmup": {"records": warmup, "matched": bool(matched), "signatures": sorted(signatures)},
    }
json.dump(results, open(sys.argv[2], "w"))
'''


@pytest.fixture(scope="module")
def served(exported, serving_setup, tmp_path_factory):
    """What the exports answer in a separate process that cannot import tfmtl, and `saved_model_cli show --all`."""
    _, test, spec, _ = serving_setup
    work = tmp_path_factory.mktemp("outside")
    names = signature_names(spec.names, "feature")
    inputs = {names[k]: v.tolist() for k, v in spec.input_arrays(test).items()}
    jobs = {name: {"version": str(job["version"]), "inputs": inputs} for name, job in exported.items()}
    (work / "jobs.json").write_text(json.dumps(jobs))
    (work / "check.py").write_text(OUTSIDE_TFMTL)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    # saved_model_cli runs meanwhile: both processes spend most of their time importing TensorFlow.
    shown = subprocess.Popen(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all",
         "--dir", str(exported["mmoe"]["version"])],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    run = subprocess.run(
        [sys.executable, "check.py", "jobs.json", "results.json"], cwd=work, env=env, capture_output=True, text=True
    )
    shown_out, shown_err = shown.communicate()
    assert run.returncode == 0, run.stderr[-3000:]
    assert shown.returncode == 0, shown_err[-3000:]
    return json.loads((work / "results.json").read_text()), shown_out


def test_signature_has_one_named_typed_input_per_feature_and_one_output_per_task(served, serving_setup):
    _, _, spec, tasks = serving_setup
    for name, result in served[0].items():
        inputs = result["inputs"]
        assert set(inputs) == {signature_name(f) for f in spec.names}, name
        assert {"Education_Level", "class_worker_type", "codes", "age", "num_emp"} <= set(inputs)
        assert inputs["Education_Level"] == "string" and inputs["codes"] == "string"
        assert inputs["age"] == "float32" and inputs["num_emp"] == "int64"
        assert result["outputs"] == {"income": [None], "never_married": [None], "weeks": [None], "race": [None, 5]}
        assert result["example_outputs"] == sorted(result["outputs"])
        assert result["described_inputs"] == sorted(inputs)
        assert result["described_outputs"]["race"]["classes"] == list(tasks[3].classes)
        assert result["described_outputs"]["never_married"]["model_output"] == "never married"


def test_served_numbers_match_model_predict_outside_tfmtl(served, exported):
    results, _ = served
    assert set(results) == set(MODELS)
    for name, job in exported.items():
        for task, expected in job["predictions"].items():
            got = np.array(results[name]["raw"][signature_name(task)])
            assert got.shape == expected.shape
            assert np.isfinite(got).all()
            assert np.max(np.abs(got - expected)) <= 1e-5, (name, task)


def test_tf_example_signature_matches_raw_features_and_reads_absent_features_as_missing(served):
    for name, result in served[0].items():
        assert result["example_max_diff"] <= 1e-6, name
        assert result["missing_max_diff"] <= 1e-6, name


def test_warmup_requests_parse_match_the_signatures_and_replay(served):
    for name, result in served[0].items():
        assert result["warmup"] == {"records": 4, "matched": True, "signatures": ["serving_default", "tf_example"]}


def test_saved_model_cli_lists_named_inputs_and_outputs(exported, served):
    assert sorted(p.name for p in exported["mmoe"]["version"].iterdir()) == [
        "assets", "assets.extra", "fingerprint.pb", "saved_model.pb", "variables"
    ]
    _, text = served
    assert "signature_def['serving_default']" in text and "signature_def['tf_example']" in text
    for expected in ("inputs['Education_Level']", "inputs['class_worker_type']", "inputs['age']", "inputs['inputs']",
                     "outputs['never_married']", "outputs['race']"):
        assert expected in text
    education = text[text.index("inputs['Education_Level']"):][:120]
    assert "DT_STRING" in education
    assert "args_0" not in text


def test_signature_names_replace_what_tensorflow_does_not_accept():
    assert signature_name("Review Text") == "Review_Text"
    assert signature_name("price ($)") == "price____"
    assert signature_name("user.id-2") == "user_id_2"
    assert signature_name("already_fine_9") == "already_fine_9"
    assert signature_name("_user") == "x_user"  # op names may not start with "_"
    with pytest.raises(tfmtl.InputError, match="'a b' and 'a_b' would both be served as 'a_b'"):
        signature_names(["a b", "a_b"], "feature")


@pytest.fixture(scope="module")
def tiny(census):
    """A small SharedBottom on a few features; cheap to export."""
    train, test = census
    columns = ["age", "education", "sex", "num_emp", "income", "marital"]
    train, test = train[columns].head(300), test[columns].head(20)
    tasks = [tfmtl.Task("income", "binary"), tfmtl.Task("marital", "binary")]
    spec = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital"])
    return SharedBottom(spec, tasks, bottom_units=[8], tower_units=[4]), train, test


def test_export_errors_are_one_line_input_errors(tiny, census, tmp_path):
    model, train, _ = tiny
    never_built = MultiTaskModel(model.feature_spec, model.tasks)
    with pytest.raises(tfmtl.InputError, match="has not been built"):
        export_saved_model(never_built, tmp_path / "a")
    with pytest.raises(tfmtl.InputError, match="expected a tfmtl MultiTaskModel"):
        export_saved_model(object(), tmp_path / "a")
    with pytest.raises(tfmtl.InputError, match="warmup_data: data is missing feature column"):
        export_saved_model(model, tmp_path / "a", warmup_data=train.drop(columns=["sex"]))
    clash = pd.DataFrame({"a b": ["x", "y"], "a_b": ["u", "v"], "y": [0, 1]})
    clashing = SharedBottom(tfmtl.FeatureSpec.infer(clash, exclude=["y"]), [tfmtl.Task("y", "binary")])
    with pytest.raises(tfmtl.InputError, match="would both be served as 'a_b'"):
        export_saved_model(clashing, tmp_path / "a")
    with pytest.raises(tfmtl.InputError, match="version: expected a positive integer"):
        export_saved_model(model, tmp_path / "a", version=0)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())


def test_versions_existing_version_overwrite_and_interrupted_export(tiny, tmp_path, monkeypatch):
    model, _, _ = tiny
    base = tmp_path / "serving"
    assert model.export(base) == base / "1"
    assert export_saved_model(model, base) == base / "2"
    (base / "2" / "marker").write_text("old")
    with pytest.raises(tfmtl.InputError, match="version 2 already exists"):
        export_saved_model(model, base, version=2)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tfmtl.export.saved_model, "write_warmup_requests", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(model, base, version=3)
    with pytest.raises(KeyboardInterrupt):
        export_saved_model(model, base, version=2, overwrite=True)
    # No half-written version under a final name, no leftovers, and the old version 2 untouched.
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    assert (base / "2" / "marker").read_text() == "old"
    monkeypatch.undo()
    assert export_saved_model(model, base, version=2, overwrite=True) == base / "2"
    assert not (base / "2" / "marker").exists() and (base / "2" / "saved_model.pb").is_file()
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]


def test_cli_export(tiny, tmp_path, capsys):
    model, train, _ = tiny
    model.save(tmp_path / "model.keras")
    train.to_csv(tmp_path / "train.csv", index=False)
    args = ["export", "--model-path", str(tmp_path / "model.keras"), "--out", str(tmp_path / "serving")]
    assert main(args + ["--warmup-data", str(tmp_path / "train.csv")]) == 0
    assert (tmp_path / "serving" / "1" / "assets.extra" / "tf_serving_warmup_requests").is_file()
    assert "warm-up requests from" in capsys.readouterr().out
    assert main(args + ["--version", "1"]) == 2
    error = capsys.readouterr().err
    assert "version 1 already exists" in error and error.count("\n") == 1
    assert main(args + ["--version", "1", "--overwrite"]) == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_predict_streams_chunks_and_writes_one_column_per_output(serving_setup, exported, tmp_path, suffix):
    _, test, spec, tasks = serving_setup
    model = exported["shared-bottom"]["model"]
    model.save(tmp_path / "model.keras")
    data = test.assign(row_id=[f"id{i}" for i in range(len(test))])
    path = tmp_path / f"data{suffix}"
    data.to_csv(path, index=False) if suffix == ".csv" else data.to_parquet(path)
    out = tmp_path / f"predictions{suffix}"
    status = main(["predict", "--model", str(tmp_path / "model.keras"), "--data", str(path), "--out", str(out),
                   "--chunk-rows", "16", "--batch-size", "8", "--keep", "row_id"])
    assert status == 0
    written = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    race = [f"race_{c}" for c in tasks[3].classes]
    assert list(written.columns) == ["row_id", "income", "never married", "weeks", *race]
    assert written["row_id"].tolist() == data["row_id"].tolist()
    expected = exported["shared-bottom"]["predictions"]
    for task in ("income", "never married", "weeks"):
        np.testing.assert_allclose(written[task], expected[task], atol=1e-5)
    np.testing.assert_allclose(written[race].to_numpy(), expected["race"], atol=1e-5)


def test_cli_predict_bad_input_is_one_line(tiny, tmp_path, capsys):
    model, _, test = tiny
    model.save(tmp_path / "model.keras")
    test.drop(columns=["sex"]).to_csv(tmp_path / "data.csv", index=False)
    base = ["predict", "--model", str(tmp_path / "model.keras"), "--out", str(tmp_path / "out.csv")]
    assert main(base + ["--data", str(tmp_path / "data.csv")]) == 2
    assert "missing feature column(s) ['sex']" in capsys.readouterr().err
    assert main(base + ["--data", str(tmp_path / "nowhere.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    test.to_csv(tmp_path / "good.csv", index=False)
    assert main(base + ["--data", str(tmp_path / "good.csv"), "--keep", "id"]) == 2
    assert "--keep: column(s) ['id'] are not in the data" in capsys.readouterr().err
    (tmp_path / "not.parquet").write_text("a,b\n1,2\n")
    (tmp_path / "not.csv.gz").write_text("a,b\n1,2\n")
    for bad in ("not.parquet", "not.csv.gz"):
        assert main(base + ["--data", str(tmp_path / bad)]) == 2
        error = capsys.readouterr().err
        assert f"--data: '{tmp_path / bad}' could not be read" in error and error.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # An output folder that is a file: named, and nothing written.
    assert main(["predict", "--model", str(tmp_path / "model.keras"), "--data", str(tmp_path / "good.csv"),
                 "--out", str(tmp_path / "good.csv" / "out.csv")]) == 2  # fmt: skip
    assert f"cannot make the folder '{tmp_path / 'good.csv'}'" in capsys.readouterr().err


def test_cli_predict_keeps_a_column_empty_in_the_first_chunk_in_parquet(tiny, tmp_path):
    model, _, test = tiny
    model.save(tmp_path / "model.keras")
    test.assign(note=[None] * 10 + ["vip"] * (len(test) - 10)).to_csv(tmp_path / "data.csv", index=False)
    out = tmp_path / "out.parquet"
    assert main(["predict", "--model", str(tmp_path / "model.keras"), "--data", str(tmp_path / "data.csv"),
                 "--out", str(out), "--keep", "note", "--chunk-rows", "10"]) == 0  # fmt: skip
    assert pd.read_parquet(out)["note"].fillna("").tolist() == [""] * 10 + ["vip"] * (len(test) - 10)


def test_missing_int64_is_out_of_vocabulary(tiny):
    model, _, test = tiny
    inputs = model.feature_spec.input_arrays(test.head(2))
    unseen, missing = dict(inputs), dict(inputs)
    unseen["num_emp"] = np.array([123_456, 123_456])
    missing["num_emp"] = np.array([MISSING_INT64, MISSING_INT64])
    np.testing.assert_allclose(model(unseen)["income"], model(missing)["income"])


def test_readme_rest_request_matches_the_census_signature(census_spec):
    import re
    from pathlib import Path

    from tfmtl.export import input_signature

    section = (Path(__file__).resolve().parents[1] / "README.md").read_text().split("## Serving with TF Serving")[1]
    request, response = (json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)[:2])
    signature = input_signature(census_spec)
    (instance,) = request["instances"]
    assert set(instance) == set(signature)
    python_types = {"string": str, "int64": int, "float32": float}
    for name, spec in signature.items():
        assert isinstance(instance[name], python_types[spec.dtype.name]), name
    assert set(response["predictions"][0]) == {"income", "marital"}


class ChainedSharedBottom(SharedBottom):
    """A model that, like a task chain (ESMM's ctcvr), returns a derived output beside its tasks."""

    def call(self, inputs, training=None):
        outputs = super().call(inputs, training=training)
        return {**outputs, "income x marital": outputs["income"] * outputs["marital"]}


def test_every_named_output_of_call_is_exported_including_derived_ones(tiny, tmp_path):
    import tensorflow as tf

    model, _, test = tiny
    chained = ChainedSharedBottom(model.feature_spec, model.tasks, bottom_units=[8], tower_units=[4])
    version = export_saved_model(chained, tmp_path / "chained")
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    assert set(signature.structured_outputs) == {"income", "marital", "income_x_marital"}
    inputs = chained.feature_spec.input_arrays(test)
    served = signature(**{signature_name(k): tf.constant(v) for k, v in inputs.items()})
    np.testing.assert_allclose(served["income_x_marital"], served["income"] * served["marital"], rtol=1e-6)
    described = json.loads((version / "assets.extra" / "tfmtl_signatures.json").read_text())["outputs"]
    assert described["income_x_marital"] == {"model_output": "income x marital", "kind": "derived",
                                             "dtype": "float32", "shape": [-1]}


def test_an_export_never_replaces_a_version_that_appeared_while_it_wrote(tmp_path):
    from pathlib import Path

    from tfmtl.export.model_directory import write_version

    def write_while_another_export_finishes(folder):
        (tmp_path / "1").mkdir()
        (tmp_path / "1" / "theirs").write_text("other export")
        Path(folder).mkdir()
        (Path(folder) / "mine").write_text("this export")

    with pytest.raises(tfmtl.InputError, match="version 1 appeared at .* during this export; nothing was replaced"):
        write_version(tmp_path, None, write_while_another_export_finishes)
    assert [p.name for p in tmp_path.iterdir()] == ["1"] and [p.name for p in (tmp_path / "1").iterdir()] == ["theirs"]
