import numpy as np
import pandas as pd
import pytest

from tfmtl import FeatureSpec, InputError
from tfmtl.features import CategoricalFeature, HashedFeature, ListFeature, NumericFeature


def frame():
    return pd.DataFrame(
        {
            "age": [25.0, 40.0, np.nan, 31.0],
            "city": ["Oslo", "Rome", None, "Oslo"],
            "code": [1, 2, 3, 1],
            "clicks": list(range(0, 400, 100)),
            "genres": [["a", "b"], ["b"], [], ["c", "a"]],
            "label": [0, 1, 0, 1],
        }
    )


def test_infer_kinds_and_statistics():
    df = frame()
    spec = FeatureSpec.infer(df, exclude=["label"], max_integer_categories=3)
    assert spec.names == ["age", "city", "code", "clicks", "genres"]
    age = spec["age"]
    assert isinstance(age, NumericFeature)
    assert age.mean == pytest.approx(32.0)
    assert age.variance == pytest.approx(np.var([25.0, 40.0, 31.0]))
    assert age.missing_indicator
    city = spec["city"]
    assert isinstance(city, CategoricalFeature) and city.dtype == "string"
    assert city.vocabulary[0] == "Oslo"  # most frequent first
    assert "" in city.vocabulary  # a missing value is its own category
    assert isinstance(spec["code"], CategoricalFeature) and spec["code"].dtype == "int64"
    assert isinstance(spec["clicks"], NumericFeature)  # 4 distinct integers > 3
    genres = spec["genres"]
    assert isinstance(genres, ListFeature) and set(genres.vocabulary) == {"a", "b", "c"}
    assert genres.vocabulary[0] == "a"


def test_overrides_hashing_and_embedding_sizes():
    df = frame()
    spec = FeatureSpec.infer(
        df,
        exclude=["label", "genres"],
        categorical=["clicks"],
        numeric=["code"],
        embedding_dims={"city": 4},
        hash_threshold=2,
        hash_bins=16,
    )
    assert isinstance(spec["code"], NumericFeature)
    assert isinstance(spec["city"], HashedFeature) and spec["city"].num_bins == 16
    assert spec["city"].embedding_dim == 4
    assert isinstance(spec["clicks"], HashedFeature) and spec["clicks"].embedding_dim == 8


def test_number_codes_with_gaps_are_the_same_category_read_as_numbers_or_as_text():
    # A categorical column of codes with blanks is float in training; a CSV read as text later says "4" or "4.0".
    df = pd.DataFrame({"zone": [4.0, 2.0, np.nan, 4.0], "label": [1, 0, 0, 1]})
    zone = FeatureSpec.infer(df, exclude=["label"], categorical=["zone"])["zone"]
    assert zone.numbers and set(zone.vocabulary) == {"4.0", "2.0", ""}
    text = pd.Series(["4", "4.0", " 2", "", None, "x"], name="zone")
    assert zone.column_values(text).tolist() == ["4.0", "4.0", "2.0", "", "", "x"]
    assert not FeatureSpec.infer(frame(), exclude=["label"])["city"].numbers  # text stays text: "07" is not "7"
    spec = FeatureSpec.infer(df, exclude=["label"], categorical=["zone"])
    assert FeatureSpec.from_config(spec.get_config()) == spec


def test_a_missing_integer_code_is_out_of_vocabulary_not_an_error():
    import tfmtl

    spec = FeatureSpec([CategoricalFeature("code", ("1", "2"), 4, dtype="int64")])
    later = pd.DataFrame({"code": [1.0, np.nan, 2.0, 99.0]})  # a blank cell: read as floats
    ids = next(iter(tfmtl.data.dataset(later, spec, batch_size=4)))["embedding_4d/ids"].numpy()[:, 0]
    assert ids[1] == ids[3] and len({ids[0], ids[1], ids[2]}) == 3  # missing = unseen, apart from both codes


def test_config_round_trip():
    spec = FeatureSpec.infer(frame(), exclude=["label"])
    again = FeatureSpec.from_config(spec.get_config())
    assert again == spec
    assert repr(again).startswith("FeatureSpec(age: numeric, city: categorical[3]")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"exclude": ["nope"]}, "exclude: column(s) ['nope'] are not in the data"),
        ({"exclude": "label"}, "exclude: expected a list of column names, got the string 'label'"),
        ({"categorical": ["age"], "numeric": ["age"]}, "more than one of"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises(InputError, match=None) as error:
        FeatureSpec.infer(frame(), **kwargs)
    assert message in str(error.value)


def test_infinite_numbers_are_named_errors_in_training_and_later():
    df = pd.DataFrame({"x": [1.0, np.inf, 2.0], "big": [1.0, 2.0, 3.0], "label": [0, 1, 0]})
    with pytest.raises(InputError, match=r"column 'x': expected finite numbers \(float32\), found inf"):
        FeatureSpec.infer(df, exclude=["label"])
    spec = FeatureSpec.infer(df.drop(columns="x"), exclude=["label"])
    with pytest.raises(InputError, match=r"column 'big': expected finite numbers \(float32\), found 1e\+40"):
        spec.input_arrays(pd.DataFrame({"big": [1.0, 1e40]}))  # beyond float32


def test_duplicate_column_names_are_named():
    df = frame()
    twice = pd.concat([df, df[["city"]]], axis=1)
    with pytest.raises(InputError, match=r"df: duplicate column names \['city'\]"):
        FeatureSpec.infer(twice, exclude=["label"])
    import tfmtl

    spec = FeatureSpec.infer(df, exclude=["label", "genres"])
    with pytest.raises(InputError, match=r"data: duplicate column names \['city'\]"):
        tfmtl.data.dataset(twice, spec)


def test_empty_frame_is_an_error():
    with pytest.raises(InputError, match="empty"):
        FeatureSpec.infer(frame().head(0))


def test_non_numeric_value_in_numeric_column_names_the_column():
    spec = FeatureSpec.infer(frame(), exclude=["label"])
    bad = frame().astype({"age": object})
    bad.loc[1, "age"] = "forty"
    with pytest.raises(InputError, match=r"column 'age': expected numbers, found 'forty'"):
        spec.input_arrays(bad)


def test_missing_feature_column_is_named():
    spec = FeatureSpec.infer(frame(), exclude=["label"])
    with pytest.raises(InputError, match=r"missing feature column\(s\) \['city'\]"):
        spec.input_arrays(frame().drop(columns=["city"]))


def test_input_arrays_have_natural_dtypes():
    spec = FeatureSpec.infer(frame(), exclude=["label"])
    arrays = spec.input_arrays(frame())
    assert arrays["age"].dtype == np.float32 and np.isnan(arrays["age"][2])
    assert arrays["city"].dtype == object and arrays["city"][2] == ""
    assert arrays["code"].dtype == np.int64
    assert list(arrays["genres"]) == ["a|b", "b", "", "c|a"]
