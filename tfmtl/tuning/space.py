"""SearchSpace: which recipe settings a search tunes, and over which values, read from a small file."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras_tuner

from tfmtl import weighting
from tfmtl._package_files import package_file
from tfmtl.cli.recipe import DEFAULTS
from tfmtl.errors import InputError
from tfmtl.layers import GATES
from tfmtl.zoo import MODELS, MultiTaskModel

SECTIONS = ("model", "models", "model_args", "features", "training", "tasks")
# The recipe settings a space may tune, beyond the model and its arguments.
TUNABLE = {"features": ("embedding_dim",), "training": ("learning_rate", "weighting", "batch_size"), "tasks": ("loss_weight",)}
# Arguments whose values are names, and the names that exist (read when a space loads: others add to them).
NAMED_CHOICES = {"gate": lambda: GATES, "weighting": lambda: weighting.STRATEGIES, "model": lambda: MODELS}


@dataclasses.dataclass(frozen=True)
class _Constant:
    value: Any

    def declare(self, hp: keras_tuner.HyperParameters, name: str) -> Any:
        return self.value

    def encode(self, value: Any, name: str) -> dict[str, Any]:
        if _normal(value) != _normal(self.value):
            raise InputError(f"{name}: {value!r} is not in the search space, which fixes it to {self.value!r}")
        return {}

    def options(self) -> tuple:
        return (self.value,)


@dataclasses.dataclass(frozen=True)
class _Choice:
    values: tuple
    default: Any

    def declare(self, hp: keras_tuner.HyperParameters, name: str) -> Any:
        return hp.Choice(name, list(self.values), default=self.default)

    def encode(self, value: Any, name: str) -> dict[str, Any]:
        if value not in self.values:
            raise InputError(f"{name}: {value!r} is not among the search space's choices {list(self.values)}")
        return {name: value}

    def options(self) -> tuple:
        return self.values


@dataclasses.dataclass(frozen=True)
class _Range:
    low: float
    high: float
    step: float | None
    sampling: str
    default: float | None
    integer: bool

    def declare(self, hp: keras_tuner.HyperParameters, name: str) -> Any:
        kind = hp.Int if self.integer else hp.Float
        return kind(name, self.low, self.high, step=self.step, sampling=self.sampling, default=self.default)

    def encode(self, value: Any, name: str) -> dict[str, Any]:
        inside = isinstance(value, (int, float)) and self.low <= value <= self.high
        if inside and self.step is not None:
            steps = (
                math.log(value / self.low, self.step) if self.sampling != "linear" else (value - self.low) / self.step
            )
            inside = abs(steps - round(steps)) < 1e-6
        if not inside or (self.integer and value != int(value)):
            step = f" in steps of {self.step}" if self.step is not None else ""
            raise InputError(f"{name}: {value!r} is outside the search space's range {self.low}..{self.high}{step}")
        return {name: int(value) if self.integer else float(value)}

    def options(self) -> tuple:
        return ()


@dataclasses.dataclass(frozen=True)
class _Layers:
    """Layer sizes from a width and a depth: each deeper layer half as wide as the one above."""

    width: Any
    depth: Any

    def declare(self, hp: keras_tuner.HyperParameters, name: str) -> Any:
        width, depth = self.width.declare(hp, _layers_name(name, "width")), self.depth.declare(hp, _layers_name(name, "depth"))
        if width is None or depth is None:  # in a scope that is not active
            return None
        return layer_sizes(width, depth)

    def encode(self, value: Any, name: str) -> dict[str, Any]:
        units = [int(u) for u in value]
        if not units or units != layer_sizes(units[0], len(units)):
            raise InputError(f"{name}: {units} is not a width and depth of the search space (each layer half the one above)")
        return {**self.width.encode(units[0], _layers_name(name, "width")), **self.depth.encode(len(units), _layers_name(name, "depth"))}

    def options(self) -> tuple:
        return ()


def layer_sizes(width: int, depth: int) -> list[int]:
    """`depth` layer sizes starting at `width`, each half the one above (at least 1).

    Example:

    ```python
    layer_sizes(64, 3)   # [64, 32, 16]
    ```
    """
    return [max(int(width) // 2**i, 1) for i in range(int(depth))]


def _layers_name(name: str, part: str) -> str:
    """`expert_units` -> `expert_width`; `mmoe/tower_units` -> `mmoe/tower_depth`."""
    return f"{name.removesuffix('_units')}_{part}"


def _normal(value: Any) -> Any:
    """Lists and tuples compare equal (recipes hold lists, constructors default to tuples)."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normal(v) for k, v in value.items()}
    return value


def _dimension(spec: Any, where: str) -> Any:
    """One setting of the file: a constant, a list of choices, a range, or a width and depth of `*_units`."""
    units = where.endswith("_units")
    if isinstance(spec, Mapping):
        keys = set(spec)
        if units and keys == {"width", "depth"}:
            return _Layers(_dimension(spec["width"], f"{where}.width"), _dimension(spec["depth"], f"{where}.depth"))
        if keys == {"value"}:
            return _Constant(spec["value"])
        if "values" in keys and keys <= {"values", "default"}:
            values = spec["values"]
            if not isinstance(values, list) or not values:
                raise InputError(f"space {where}: values must be a non-empty list")
            return _Choice(tuple(values), spec.get("default", values[0]))
        if {"min", "max"} <= keys <= {"min", "max", "step", "sampling", "default"}:
            numbers = [spec[k] for k in ("min", "max", "step", "default") if spec.get(k) is not None]
            if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
                raise InputError(f"space {where}: min, max, step and default must be numbers")
            integer = all(isinstance(n, int) for n in numbers)
            return _Range(spec["min"], spec["max"], spec.get("step"), spec.get("sampling", "linear"), spec.get("default"), integer)
        layers = ", {width, depth}" if units else ""
        raise InputError(f"space {where}: expected a value, a list of choices, {{values}}, {{min, max}}, {{value}}{layers}; got keys {sorted(keys)}")
    if isinstance(spec, list) and not units:
        if not spec:
            raise InputError(f"space {where}: an empty list of choices")
        return _Choice(tuple(spec), spec[0])
    return _Constant(spec)


# Settings whose every value must be a positive number (loss weights: at least 0): a trial with
# another could only fail, or would be silently changed (a layer of width -8 becomes 1).
_POSITIVE = ("learning_rate", "batch_size", "embedding_dim", "width", "depth")
_NON_NEGATIVE = ("loss_weight",)


def _check_numbers(dimension: Any, key: str, where: str) -> None:
    """Steps and defaults of ranges, and the values of settings that only take positive numbers."""
    if isinstance(dimension, _Layers):
        _check_numbers(dimension.width, "width", f"{where}.width")
        _check_numbers(dimension.depth, "depth", f"{where}.depth")
        return
    if isinstance(dimension, _Range):
        if dimension.step is not None and not dimension.step > 0:
            raise InputError(f"space {where}: step must be positive, got {dimension.step}")
        if dimension.default is not None and not dimension.low <= dimension.default <= dimension.high:
            raise InputError(f"space {where}: default {dimension.default} is outside {dimension.low}..{dimension.high}")
        values: tuple = (dimension.low, dimension.high)
    else:
        values = dimension.options()
    if key not in _POSITIVE + _NON_NEGATIVE:
        return
    for value in values:
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or value < 0 or (key in _POSITIVE and value == 0):
            expected = "positive" if key in _POSITIVE else "non-negative"
            raise InputError(f"space {where}: expected {expected} numbers, got {value!r}")


def _check(dimension: Any, name: str, where: str) -> None:
    """Lets keras-tuner check the dimension (types, bounds), and checks named choices exist."""
    _check_numbers(dimension, name.rsplit("/", 1)[-1], where)
    try:
        dimension.declare(keras_tuner.HyperParameters(), name)
    except (ValueError, TypeError) as error:
        raise InputError(f"space {where}: {str(error).strip().splitlines()[0]}") from None
    key = name.rsplit("/", 1)[-1]
    if key in NAMED_CHOICES:
        known = NAMED_CHOICES[key]()
        for option in dimension.options():
            option_name = option.get("name") if isinstance(option, Mapping) else option
            if option_name not in known:
                raise InputError(f"space {where}: unknown {key} {option_name!r}, expected one of {', '.join(known)}")


def model_arguments(model: str) -> dict[str, inspect.Parameter]:
    """The constructor arguments of a zoo model, its own and `MultiTaskModel`'s (beyond features and tasks)."""
    merged = dict(inspect.signature(MultiTaskModel.__init__).parameters)
    merged.update(inspect.signature(MODELS[model].__init__).parameters)
    return {k: p for k, p in merged.items() if k not in ("self", "kwargs", "features", "tasks")}


class SearchSpace:
    """What a search tunes: model family, model arguments, embedding size, training settings, loss weights.

    A space mirrors a recipe's sections. Each setting is a constant, a list of
    choices, a `{min, max[, step, sampling, default]}` range (integers when all
    are integers), `{values, default}`, or `{value}` for a constant table (a gate
    with options). A `*_units` argument (layer sizes) is `{width, depth}`: the
    first layer's width and the number of layers, each half as wide as the one
    above (`width = 64, depth = 2` is `[64, 32]`); a plain list is fixed sizes.

    Sections:
        model: the model families to choose among (default: every model in
            `tfmtl.zoo.MODELS`).
        models.NAME: arguments of one family (hyperparameters `NAME/arg`).
        model_args: arguments every family takes (`tower_units`, `dropout`), unless
            its own section sets them.
        features: `embedding_dim`.
        training: `learning_rate`, `weighting`, `batch_size`.
        tasks: `loss_weight`, one hyperparameter `loss_weight/TASK` per task, used
            when the weighting is static.

    Example:

    ```python
    space = SearchSpace({
        "model": ["mmoe", "ple"],
        "models": {"mmoe": {"num_experts": {"min": 2, "max": 8, "step": 2},
                            "expert_units": {"width": [32, 64], "depth": [1, 2]}}},
        "training": {"learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"}},
    })
    ```
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        unknown = sorted(set(config) - set(SECTIONS))
        if unknown:
            raise InputError(f"space: unknown section(s) {unknown}, expected some of {', '.join(SECTIONS)}")
        for section in SECTIONS[1:]:
            if not isinstance(config.get(section, {}), Mapping):
                raise InputError(f"space [{section}]: expected a table")
        self.config = json.loads(json.dumps(config))
        names = config.get("model", list(MODELS))
        self.model = _dimension(names if isinstance(names, list) else [names], "model")
        _check(self.model, "model", "model")
        self.models: dict[str, dict[str, Any]] = {}
        for model, arguments in config.get("models", {}).items():
            if model not in MODELS:
                raise InputError(f"space [models.{model}]: unknown model {model!r}, expected one of {', '.join(MODELS)}")
            self.models[model] = self._arguments(arguments, set(model_arguments(model)), f"models.{model}")
        common = set(inspect.signature(MultiTaskModel.__init__).parameters) - {"self", "kwargs", "features", "tasks"}
        self.model_args = self._arguments(config.get("model_args", {}), common, "model_args")
        self.sections = {
            section: self._arguments(config.get(section, {}), set(keys), section) for section, keys in TUNABLE.items()
        }
        weighting_options = self.sections["training"].get("weighting", _Constant("static")).options()
        if "loss_weight" in self.sections["tasks"] and "static" not in weighting_options:
            raise InputError("space [tasks] loss_weight: loss weights need static weighting among the [training] weighting choices")

    @staticmethod
    def _arguments(table: Any, known: set[str], where: str) -> dict[str, Any]:
        if not isinstance(table, Mapping):
            raise InputError(f"space [{where}]: expected a table")
        unknown = sorted(set(table) - known)
        if unknown:
            raise InputError(f"space [{where}]: unknown setting(s) {unknown}, expected some of {', '.join(sorted(known))}")
        dimensions = {key: _dimension(spec, f"{where}.{key}") for key, spec in table.items()}
        for key, dimension in dimensions.items():
            _check(dimension, key, f"{where}.{key}")
        return dimensions

    @classmethod
    def load(cls, path: str | Path) -> "SearchSpace":
        """Reads a space from a `.toml`, `.json`, `.yaml` or `.yml` file."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"--space: file {str(path)!r} does not exist")
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                config = yaml.safe_load(text) or {}
            elif path.suffix == ".json":
                config = json.loads(text)
            else:
                config = tomllib.loads(text)
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, ValueError) as error:
            message = str(error).strip().splitlines()[0]
            raise InputError(f"--space: {str(path)!r} is not valid {path.suffix[1:].upper()}: {message}") from None
        if not isinstance(config, Mapping):
            raise InputError(f"--space: {str(path)!r} must hold a table of sections")
        return cls(config)

    def missing_features(self, columns: Sequence[str]) -> dict[tuple[str, str], list[str]]:
        """Settings that name features absent from `columns`: `{(family, argument): [missing names]}`.

        The arguments that name features end in `_features` (PEPNet's priors); a space
        made for one data set can name its columns there.

        Example:

        ```python
        SearchSpace.load(shipped_space(None)).missing_features(["user", "item"])
        # {("pepnet", "domain_features"): ["class_worker"], ("pepnet", "personal_features"): [...]}
        ```
        """
        missing = {}
        for model in self._model_choices():
            for key, dimension in self.models.get(model, {}).items():
                if key.endswith("_features"):
                    named = {name for option in dimension.options() for name in option or []}
                    if absent := sorted(named - set(columns)):
                        missing[(model, key)] = absent
        return missing

    def without(self, settings: Sequence[tuple[str, str]]) -> "SearchSpace":
        """This space without the given `(family, argument)` settings: those families keep their defaults there."""
        config = json.loads(json.dumps(self.config))
        for model, key in settings:
            config.get("models", {}).get(model, {}).pop(key, None)
        return SearchSpace(config)

    def _model_choices(self) -> tuple:
        return self.model.options()

    def _dimensions(self, model: str, task_names: Sequence[str]) -> list[tuple[str, tuple, Any, dict[str, list]]]:
        """`(hyperparameter name, recipe path, dimension, conditions)` of everything tuned for `model`."""
        tuned_model = isinstance(self.model, _Choice)
        own = self.models.get(model, {})
        found = []
        for key, dimension in self.model_args.items():
            if key not in own:
                users = [m for m in self._model_choices() if key not in self.models.get(m, {})]
                conditions = {"model": users} if tuned_model and len(users) < len(self._model_choices()) else {}
                found.append((key, ("model_args", key), dimension, conditions))
        for key, dimension in own.items():
            found.append((f"{model}/{key}", ("model_args", key), dimension, {"model": [model]} if tuned_model else {}))
        for section in ("features", "training"):
            for key, dimension in self.sections[section].items():
                found.append((key, (section, key), dimension, {}))
        if "loss_weight" in self.sections["tasks"]:
            tuned_weighting = isinstance(self.sections["training"].get("weighting"), _Choice)
            conditions = {"weighting": ["static"]} if tuned_weighting else {}
            for task in task_names:
                found.append((f"loss_weight/{task}", ("loss_weights", task), self.sections["tasks"]["loss_weight"], conditions))
        return found

    def declare(self, hp: keras_tuner.HyperParameters, task_names: Sequence[str]) -> dict[str, Any]:
        """Declares the hyperparameters on `hp` and returns the recipe settings of its values.

        Returns `{"model": ..., "model_args": {...}, "features": {...}, "training": {...},
        "loss_weights": {task: weight}}`; settings in a scope that is not active are left out.
        """
        model = self.model.declare(hp, "model")
        settings: dict[str, Any] = {"model": model, "model_args": {}, "features": {}, "training": {}, "loss_weights": {}}
        for name, (section, key), dimension, conditions in self._dimensions(model, task_names):
            with contextlib.ExitStack() as scopes:
                for parent, values in conditions.items():
                    scopes.enter_context(hp.conditional_scope(parent, values))
                value = dimension.declare(hp, name)
            if value is not None and all(settings_value(settings, parent) in values for parent, values in conditions.items()):
                settings[section][key] = value
        return settings

    def values_for(self, recipe: Mapping[str, Any]) -> dict[str, Any]:
        """The hyperparameter values that give `recipe`; an `InputError` if the space does not hold it.

        Model arguments the space does not tune must be the model's defaults.

        Example:

        ```python
        space.values_for(tfmtl.cli.recipe.load_recipe("zoo/census-income/mmoe.toml"))
        ```
        """
        model = recipe["model"]
        if model not in MODELS:
            raise InputError(f"model: unknown model {model!r}, expected one of {', '.join(MODELS)}")
        values = self.model.encode(model, "model")
        arguments = {k: p.default for k, p in model_arguments(model).items()}
        arguments.update(recipe.get("model_args") or {})
        training = {**DEFAULTS["training"], **(recipe.get("training") or {})}
        sources = {
            "model_args": arguments,
            "features": {**DEFAULTS["features"], **(recipe.get("features") or {})},
            "training": training,
            "loss_weights": {t["name"]: t.get("loss_weight", 1.0) for t in recipe.get("tasks") or []},
        }
        tuned = set()
        for name, (section, key), dimension, conditions in self._dimensions(model, list(sources["loss_weights"])):
            if "weighting" in conditions and training["weighting"] != "static":
                continue
            values.update(dimension.encode(sources[section][key], name))
            tuned.add((section, key))
        defaults = {k: p.default for k, p in model_arguments(model).items()}
        for key, value in (recipe.get("model_args") or {}).items():
            if ("model_args", key) not in tuned and _normal(value) != _normal(defaults.get(key)):
                raise InputError(f"{model}/{key}: {value!r} is not in the search space, which keeps the default {defaults.get(key)!r}")
        return values


def settings_value(settings: Mapping[str, Any], name: str) -> Any:
    """The value a declared setting took, for checking conditions (`model`, `weighting`)."""
    return settings["model"] if name == "model" else settings["training"].get(name)


def shipped_space(dataset: str | None) -> Path:
    """The shipped search space of a bundled data set; Census-Income's for other data.

    Example:

    ```python
    space = SearchSpace.load(shipped_space("census-income"))
    ```
    """
    name = f"{dataset}.toml" if dataset else "census-income.toml"
    installed = package_file("tfmtl.spaces", name)
    if installed is not None:
        return installed
    source_tree = Path(__file__).resolve().parents[2] / "tuning" / name
    if source_tree.is_file():
        return source_tree
    if dataset:
        return shipped_space(None)
    raise InputError("--space: no shipped search space found; give --space FILE")

