"""Particle swarm optimisation as a keras-tuner Oracle, over integer, float and choice hyperparameters."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner
import numpy as np
from keras_tuner.engine import trial as trial_module

from tfmtl.errors import InputError

# Clerc and Kennedy's constriction coefficients (IEEE TEC 2002): a swarm that converges without a velocity cap.
INERTIA = 0.7298
ACCELERATION = 1.49618
MAX_SPEED = 0.5  # of the unit cube per move: a particle never jumps across the whole range at once
_TOP = 1.0 - 1e-9  # positions live in [0, 1); keras-tuner maps 1.0 past the last value


class ParticleSwarmOracle(keras_tuner.Oracle):
    """Searches with a swarm of particles pulled towards their own and the swarm's best trials.

    Every hyperparameter is a coordinate in [0, 1) through keras-tuner's own
    `value_to_prob`/`prob_to_value` (the mapping Bayesian optimisation uses), so
    integers, floats (linear or log) and choices move alike: a particle's position
    stays continuous and is rounded only when read. Each new trial moves the next
    particle in turn (Kennedy and Eberhart, 1995, with Clerc's constriction):
    `v = w v + c1 r1 (personal_best - x) + c2 r2 (swarm_best - x)`, `x = x + v`,
    then clipped to the cube. The update is asynchronous, so any number of
    distributed workers can take trials at once. A move that lands on values
    already tried draws the particle a new velocity; after several such draws the
    trial is random. Conditional hyperparameters take their coordinate when active.
    The swarm's state is saved with the oracle, so a search resumes where it stopped.

    Args:
        objective: as for any `keras_tuner.Oracle`.
        max_trials: the number of trials.
        num_particles: the swarm's size (default: about the square root of
            `max_trials`, at least 2: a few moves each).
        initial_values: hyperparameter values the first particles start at (such
            as reference configurations); the others start at random.
        inertia, cognitive, social: `w`, `c1` and `c2` of the update.
        seed: random seed.
        **kwargs: the other `keras_tuner.Oracle` arguments.

    Example:

    ```python
    hp = keras_tuner.HyperParameters()
    hp.Float("x", -5.0, 5.0)
    hp.Int("n", 0, 20)
    hp.Choice("c", ["a", "b", "c"])
    oracle = ParticleSwarmOracle(keras_tuner.Objective("loss", "min"), max_trials=30, hyperparameters=hp, seed=1)
    ```
    """

    def __init__(
        self,
        objective: Any = None,
        max_trials: int = 10,
        num_particles: int | None = None,
        initial_values: Sequence[Mapping[str, Any]] = (),
        inertia: float = INERTIA,
        cognitive: float = ACCELERATION,
        social: float = ACCELERATION,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(objective=objective, max_trials=max_trials, seed=seed, **kwargs)
        if num_particles is not None and num_particles < 1:
            raise InputError(f"num_particles: expected a positive integer, got {num_particles}")
        self.num_particles = num_particles or max(2, round(math.sqrt(max_trials)))
        self.initial_values = [dict(v) for v in initial_values][: self.num_particles]
        self.inertia, self.cognitive, self.social = inertia, cognitive, social
        self._rng = np.random.default_rng(self.seed)
        self._positions: list[dict[str, float]] = [{} for _ in range(self.num_particles)]
        self._velocities: list[dict[str, float]] = [{} for _ in range(self.num_particles)]
        self._moves = [0] * self.num_particles
        self._personal_best: list[tuple[float, dict[str, float]] | None] = [None] * self.num_particles
        self._swarm_best: tuple[float, dict[str, float]] | None = None
        self._next_particle = 0
        # trial id -> (particle, the position it was run at)
        self._trial_positions: dict[str, tuple[int, dict[str, float]]] = {}

    def _coordinate(self, particle: int, hp: Any) -> float:
        """The particle's coordinate of `hp`, first drawn when it meets `hp` (or from its initial values)."""
        position, velocity = self._positions[particle], self._velocities[particle]
        if hp.name not in position:
            start = self.initial_values[particle] if particle < len(self.initial_values) else {}
            if hp.name in start:
                try:
                    position[hp.name] = float(hp.value_to_prob(start[hp.name]))
                except (ValueError, TypeError):
                    raise InputError(f"initial_values: {hp.name}={start[hp.name]!r} is not in the search space") from None
            else:
                position[hp.name] = float(self._rng.uniform(0.0, _TOP))
            velocity[hp.name] = float(self._rng.uniform(-0.25, 0.25))
        return min(max(position[hp.name], 0.0), _TOP)

    def _values(self, particle: int) -> dict[str, Any]:
        """Reads the particle's position as hyperparameter values (active ones only)."""
        hps = keras_tuner.HyperParameters()
        for hp in self.hyperparameters.space:
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = hp.prob_to_value(self._coordinate(particle, hp))
        return hps.values

    def _move(self, particle: int, new_velocity: bool = False) -> None:
        position, velocity = self._positions[particle], self._velocities[particle]
        own = self._personal_best[particle][1] if self._personal_best[particle] else position
        swarm = self._swarm_best[1] if self._swarm_best else own
        for name, x in position.items():
            if new_velocity:
                speed = self._rng.uniform(-MAX_SPEED, MAX_SPEED)
            else:
                r1, r2 = self._rng.random(2)
                speed = (
                    self.inertia * velocity[name]
                    + self.cognitive * r1 * (own.get(name, x) - x)
                    + self.social * r2 * (swarm.get(name, x) - x)
                )
            speed = float(np.clip(speed, -MAX_SPEED, MAX_SPEED))
            moved = x + speed
            if not 0.0 <= moved <= _TOP:  # stop at the wall instead of sticking to it with speed
                moved, speed = float(np.clip(moved, 0.0, _TOP)), 0.0
            position[name], velocity[name] = moved, speed

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        particle = self._next_particle % self.num_particles
        self._next_particle += 1
        first = self._moves[particle] == 0
        values = None
        for attempt in range(self._max_collisions):
            if not (first and attempt == 0):
                self._move(particle, new_velocity=attempt > 0)
            candidate = self._values(particle)
            if not self._duplicate(candidate):
                values = candidate
                break
        if values is None:
            values = self._random_values()
            if values is None:
                return {"status": trial_module.TrialStatus.STOPPED, "values": None}
            active = {hp.name: hp for hp in self.hyperparameters.space if hp.name in values}
            self._positions[particle].update({n: float(hp.value_to_prob(values[n])) for n, hp in active.items()})
        self._moves[particle] += 1
        self._trial_positions[trial_id] = (particle, dict(self._positions[particle]))
        return {"status": trial_module.TrialStatus.RUNNING, "values": values}

    @keras_tuner.synchronized
    def end_trial(self, trial: Any) -> None:
        super().end_trial(trial)
        ended = self.trials[trial.trial_id]
        if ended.status != trial_module.TrialStatus.COMPLETED or trial.trial_id not in self._trial_positions:
            return
        score = ended.score
        if score is None or not np.isfinite(score):
            return
        particle, position = self._trial_positions[trial.trial_id]
        best = self._personal_best[particle]
        if best is None or self.objective.better_than(score, best[0]):
            self._personal_best[particle] = (float(score), position)
        if self._swarm_best is None or self.objective.better_than(score, self._swarm_best[0]):
            self._swarm_best = (float(score), position)
        self.save()  # the base class saved before these bests changed

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state["swarm"] = {
            "num_particles": self.num_particles,
            "positions": self._positions,
            "velocities": self._velocities,
            "moves": self._moves,
            "personal_best": self._personal_best,
            "swarm_best": self._swarm_best,
            "next_particle": self._next_particle,
            "trial_positions": self._trial_positions,
            "rng": self._rng.bit_generator.state,
        }
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        swarm = state["swarm"]
        self.num_particles = swarm["num_particles"]
        self._positions, self._velocities = swarm["positions"], swarm["velocities"]
        self._moves, self._next_particle = swarm["moves"], swarm["next_particle"]
        self._personal_best = [tuple(b) if b else None for b in swarm["personal_best"]]
        self._swarm_best = tuple(swarm["swarm_best"]) if swarm["swarm_best"] else None
        self._trial_positions = {k: (v[0], v[1]) for k, v in swarm["trial_positions"].items()}
        self._rng.bit_generator.state = swarm["rng"]


class ParticleSwarm(keras_tuner.Tuner):
    """A keras-tuner `Tuner` driven by `ParticleSwarmOracle`, as `RandomSearch` is by its oracle.

    Args:
        hypermodel: a `keras_tuner.HyperModel` (such as `MultiTaskHyperModel`).
        objective, max_trials, num_particles, initial_values, seed: see `ParticleSwarmOracle`.
        hyperparameters, tune_new_entries, allow_new_entries, max_retries_per_trial,
            max_consecutive_failed_trials: as for `keras_tuner.RandomSearch`.
        **kwargs: `directory`, `project_name`, `overwrite`, ... of `keras_tuner.Tuner`.

    Example:

    ```python
    tuner = ParticleSwarm(hypermodel, objective=hypermodel.objective.keras_objective, max_trials=20,
                          directory="search")
    tuner.search(train, validation_data=valid, epochs=1)
    ```
    """

    def __init__(
        self,
        hypermodel: keras_tuner.HyperModel | None = None,
        objective: Any = None,
        max_trials: int = 10,
        num_particles: int | None = None,
        initial_values: Sequence[Mapping[str, Any]] = (),
        seed: int | None = None,
        hyperparameters: keras_tuner.HyperParameters | None = None,
        tune_new_entries: bool = True,
        allow_new_entries: bool = True,
        max_retries_per_trial: int = 0,
        max_consecutive_failed_trials: int = 3,
        **kwargs: Any,
    ) -> None:
        oracle = ParticleSwarmOracle(
            objective=objective,
            max_trials=max_trials,
            num_particles=num_particles,
            initial_values=initial_values,
            seed=seed,
            hyperparameters=hyperparameters,
            tune_new_entries=tune_new_entries,
            allow_new_entries=allow_new_entries,
            max_retries_per_trial=max_retries_per_trial,
            max_consecutive_failed_trials=max_consecutive_failed_trials,
        )
        super().__init__(oracle, hypermodel, **kwargs)
