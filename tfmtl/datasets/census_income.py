"""The UCI Census-Income (KDD) data set, bundled, with the MMoE paper's two tasks."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pandas as pd

from tfmtl.errors import InputError

COLUMNS = [
    "age", "class_worker", "det_ind_code", "det_occ_code", "education", "wage_per_hour", "hs_college",
    "marital_stat", "major_ind_code", "major_occ_code", "race", "hisp_origin", "sex", "union_member",
    "unemp_reason", "full_or_part_emp", "capital_gains", "capital_losses", "stock_dividends", "tax_filer_stat",
    "region_prev_res", "state_prev_res", "det_hh_fam_stat", "det_hh_summ", "instance_weight", "mig_chg_msa",
    "mig_chg_reg", "mig_move_reg", "mig_same", "mig_prev_sunbelt", "num_emp", "fam_under_18", "country_father",
    "country_mother", "country_self", "citizenship", "own_or_self", "vet_question", "vet_benefits",
    "weeks_worked", "year", "income_50k",
]  # fmt: skip

# Integer-coded columns that census-income.names lists as nominal: categories, not quantities.
NOMINAL_CODES = ["det_ind_code", "det_occ_code", "own_or_self", "vet_benefits", "year"]

TASKS = ("income", "marital")


def _bundled(name: str) -> Path:
    return Path(str(resources.files("tfmtl.datasets") / "data" / name))


def read_census_file(path: str | os.PathLike) -> pd.DataFrame:
    """Reads one Census-Income file and derives the two task labels.

    Returns the 40 attributes less marital status (it is a label) and the instance
    weight (a sampling weight, not a feature), plus `income` (1 when income > 50K)
    and `marital` (1 when never married).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"census-income file {str(path)!r} does not exist")
    df = pd.read_csv(path, header=None, names=COLUMNS, skipinitialspace=True)
    if df.shape[1] != len(COLUMNS) or df["income_50k"].isna().any():
        raise InputError(f"census-income file {str(path)!r}: expected {len(COLUMNS)} comma-separated fields per row")
    unknown = sorted(set(df["income_50k"]) - {"- 50000.", "50000+."})
    if unknown:
        raise InputError(f"census-income file {str(path)!r}: unexpected income label(s) {unknown[:3]}")
    df["income"] = (df["income_50k"] == "50000+.").astype("int64")
    df["marital"] = (df["marital_stat"] == "Never married").astype("int64")
    for column in NOMINAL_CODES:
        df[column] = df[column].astype(str)
    return df.drop(columns=["income_50k", "marital_stat", "instance_weight"])


def census_income(path: str | os.PathLike | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Returns the Census-Income `(train, test)` DataFrames: 199,523 and 99,762 rows.

    Tasks as in Ma et al. (KDD 2018): `income` (> 50K, 6.2 % positive) and
    `marital` (never married, 43 % positive). Without `path` the copy bundled with
    tfmtl is read (CC BY 4.0; Lane & Kohavi, UCI, doi:10.24432/C5N30T); with a
    folder, `census-income.data[.gz]` and `census-income.test[.gz]` are read from it.

    Example:

    ```python
    from tfmtl import FeatureSpec
    train, test = census_income()
    features = FeatureSpec.infer(train, exclude=["income", "marital"])
    ```
    """
    if path is None:
        files = [_bundled("census-income.data.gz"), _bundled("census-income.test.gz")]
    else:
        folder = Path(path)
        if not folder.is_dir():
            raise InputError(f"census-income path {str(folder)!r} is not a folder")
        files = []
        for stem in ("census-income.data", "census-income.test"):
            candidates = [folder / stem, folder / f"{stem}.gz"]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise InputError(f"census-income path {str(folder)!r} has no {stem} or {stem}.gz")
            files.append(found)
    return read_census_file(files[0]), read_census_file(files[1])
