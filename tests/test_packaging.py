"""Packaging: every subpackage is listed, the data and recipes ship, the backend is checked."""

import configparser
import os
from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]


def test_setup_cfg_lists_every_package():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    # tfmtl.recipes and tfmtl.spaces are zoo/ and tuning/, mapped in package_dir.
    assert listed == set(find_packages(REPO, include=["tfmtl", "tfmtl.*"])) | {"tfmtl.recipes", "tfmtl.spaces"}


def test_every_zoo_recipe_loads_and_names_a_known_model():
    from tfmtl.cli.recipe import load_recipe
    from tfmtl.zoo import MODELS

    recipes = sorted((REPO / "zoo").glob("*/*.toml"))
    assert recipes
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe["model"] in MODELS and path.stem == recipe["model"]
        assert path.parent.name == recipe["dataset"]


def test_wrong_keras_backend_is_a_clear_error(monkeypatch):
    import keras
    import pytest

    from tfmtl._backend import check_backend

    monkeypatch.setattr(keras.config, "backend", lambda: "jax")
    with pytest.raises(ImportError, match="set the environment variable KERAS_BACKEND=tensorflow"):
        check_backend()
    monkeypatch.setattr(keras, "__version__", "2.15.0")
    with pytest.raises(ImportError, match="tfmtl needs Keras 3"):
        check_backend()


def test_an_installed_copy_finds_its_shipped_recipes_and_search_spaces(tmp_path):
    """Installed (not run from the source tree), tfmtl still finds the zoo's recipes and the tuner's spaces."""
    import subprocess
    import sys

    target = tmp_path / "site"
    subprocess.run(
        # Built as `.ci/run`'s own install builds it (an isolated build with pyproject.toml's setuptools):
        # the test environment itself need not hold setuptools or wheel.
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(REPO)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    probe = (
        "import tfmtl\n"
        "from pathlib import Path\n"
        "from tfmtl.cli.recipe import shipped_recipe\n"
        "from tfmtl.tuning.space import shipped_space\n"
        f"assert Path(tfmtl.__file__).is_relative_to({str(target)!r}), tfmtl.__file__\n"
        "for model in ('mmoe', 'ple', 'shared-bottom'):\n"
        "    assert shipped_recipe(model, 'census-income') is not None, model\n"
        "assert shipped_space('census-income').parent.name == 'spaces'\n"
    )
    # Outside the source tree, with only the installed copy of tfmtl on the path.
    env = {**os.environ, "PYTHONPATH": str(target)}
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=tmp_path, env=env)
