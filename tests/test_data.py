import gzip
import os

import numpy as np
import pandas as pd
import pytest

import tfmtl
from tfmtl import InputError
from tfmtl.data import dataset, read_table, write_atomically, write_json
from tfmtl.features import CategoricalFeature, HashedFeature, ListFeature, NumericFeature
from tfmtl.layers import FeatureEncoder


def test_dataset_batches_inputs_labels_and_weights(census, census_spec):
    train, _ = census
    tasks = [tfmtl.Task("income", "binary", sample_weight="age"), tfmtl.Task("marital", "binary")]
    spec = tfmtl.FeatureSpec.infer(train, exclude=["income", "marital", "age"])
    ds = dataset(train, spec, tasks, batch_size=512, preprocess=False)
    x, y, w = next(iter(ds))
    assert set(x) == set(spec.names) and x["age" if "age" in x else "education"].shape[0] == 512
    assert x["education"].dtype.name == "string"
    np.testing.assert_allclose(y["income"].numpy(), train["income"].head(512).to_numpy())
    np.testing.assert_allclose(w["income"].numpy(), train["age"].head(512).to_numpy())
    np.testing.assert_allclose(w["marital"].numpy(), 1.0)
    assert sum(int(b[1]["income"].shape[0]) for b in ds) == len(train)


def test_dataset_shuffles_each_epoch_and_covers_every_row(census, census_spec, census_tasks):
    train, _ = census
    ds = dataset(train, census_spec, census_tasks, batch_size=1000, shuffle=True, seed=3, preprocess=False)
    first = np.concatenate([b[0]["age"].numpy() for b in ds])
    second = np.concatenate([b[0]["age"].numpy() for b in ds])
    assert not np.array_equal(first, second)
    np.testing.assert_allclose(np.sort(first), np.sort(train["age"].to_numpy(np.float32)))


def test_dataset_without_tasks_yields_inputs_only(census, census_spec):
    x = next(iter(dataset(census[1], census_spec, batch_size=8, preprocess=False)))
    assert isinstance(x, dict) and x["age"].shape == (8,)
    x = next(iter(dataset(census[1], census_spec, batch_size=8)))
    assert set(x) == {"embedding_8d/ids", "numeric/values"}
    assert x["embedding_8d/ids"].shape == (8, len(census_spec.of_kind("categorical")))


def test_shuffle_is_reproducible_and_covers_every_row_once(census, census_spec, census_tasks):
    def orders(seed):
        ds = dataset(census[0], census_spec, census_tasks, batch_size=300, shuffle=True, seed=seed)
        return [np.concatenate([b[1]["income"].numpy() for b in ds]) for _ in range(2)], ds

    (a1, a2), ds = orders(5)
    (b1, b2), _ = orders(5)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert len(a1) == len(census[0]) and sorted(a1) == sorted(census[0]["income"])
    sizes = [int(b[1]["income"].shape[0]) for b in ds]
    assert sizes[:-1] == [300] * (len(sizes) - 1) and sizes[-1] == len(census[0]) - 300 * (len(sizes) - 1)


def test_preprocessed_columns_equal_the_encoders_preprocessing_of_every_row():
    # Columns are looked up through their distinct values: the result must be row for row
    # what the encoder gives, for every feature kind, missing and unseen values included.
    rng = np.random.default_rng(0)
    rows = 300
    df = pd.DataFrame({
        "city": rng.choice(["Oslo", "Rome", "Lima", None], rows),
        "code": rng.integers(0, 6, rows),
        "shop": rng.integers(0, 40, rows),
        "user": [f"u{i}" for i in rng.integers(0, 500, rows)],
        "item": rng.integers(0, 10**9, rows),
        "genres": rng.choice(["a|b", "b", "", "c|zz"], rows),
        "age": np.where(rng.random(rows) < 0.1, np.nan, rng.normal(40, 9, rows)),
        "score": rng.normal(0, 1, rows),
    })
    # Integer features before string ones of the same size: one table holds both, in its own order.
    spec = tfmtl.FeatureSpec([
        CategoricalFeature("code", ("1", "2", "3"), 4, dtype="int64"),
        CategoricalFeature("city", ("Rome", "Oslo", ""), 4),  # "Lima" is out of vocabulary
        HashedFeature("shop", 16, 8, dtype="int64"),
        HashedFeature("user", 64, 8),
        HashedFeature("item", 32, 4, dtype="int64"),
        ListFeature("genres", ("a", "b", "c"), 4),
        NumericFeature("age", mean=40.0, variance=81.0, missing_indicator=True),
        NumericFeature("score"),
    ])
    expected = FeatureEncoder(spec).preprocess(spec.input_arrays(df))
    got = next(iter(dataset(df, spec, batch_size=rows)))
    assert set(got) == set(expected)
    for key in expected:
        np.testing.assert_array_equal(got[key].numpy(), expected[key].numpy(), err_msg=key)


def test_dataset_bad_input(census, census_spec, census_tasks):
    with pytest.raises(InputError, match="empty"):
        dataset(census[0].head(0), census_spec, census_tasks)
    with pytest.raises(InputError, match="batch_size"):
        dataset(census[0], census_spec, census_tasks, batch_size=0)
    with pytest.raises(InputError, match=r"label column 'income' is not in the data"):
        dataset(census[0].drop(columns=["income"]), census_spec, census_tasks)


def test_read_table_formats(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    df.to_csv(tmp_path / "t.csv", index=False)
    with gzip.open(tmp_path / "t.csv.gz", "wt") as f:
        df.to_csv(f, index=False)
    df.to_parquet(tmp_path / "t.parquet")
    for name in ("t.csv", "t.csv.gz", "t.parquet"):
        pd.testing.assert_frame_equal(read_table(tmp_path / name), df, check_dtype=False)


def test_read_table_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(InputError, match="is empty"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("a,b\n")
    with pytest.raises(InputError, match="has no rows"):
        read_table(tmp_path / "header.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(InputError, match="expected a file ending in"):
        read_table(tmp_path / "t.xlsx")


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "out" / "metrics.json"

    def fail(temporary):
        with open(temporary, "w") as f:
            f.write('{"half": ')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, fail)
    assert not target.exists() and os.listdir(target.parent) == []
    write_json(target, {"ok": 1})
    assert target.read_text().strip() == '{\n  "ok": 1\n}'
    # A failed rewrite keeps the previous complete file.
    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, fail)
    assert target.read_text().strip() == '{\n  "ok": 1\n}' and os.listdir(target.parent) == ["metrics.json"]


def test_census_income_bundled(census_full):
    train, test = census_full
    assert (len(train), len(test)) == (199_523, 99_762)
    assert "marital_stat" not in train and "instance_weight" not in train
    assert abs(train["income"].mean() - 0.062) < 0.001 and abs(train["marital"].mean() - 0.433) < 0.001
    assert train["det_ind_code"].dtype != np.int64  # nominal codes are categories


def test_census_income_from_a_folder(tmp_path, census_full):
    with pytest.raises(InputError, match="has no census-income.data"):
        tfmtl.datasets.census_income(tmp_path)
