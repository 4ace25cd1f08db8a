"""MultiTaskModel: the Keras model every tfmtl architecture is built on."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import keras
import tensorflow as tf
from tensorflow.python.framework.config import is_op_determinism_enabled
from keras import ops

import tfmtl.weighting as weighting_lib
from tfmtl.distribute.keras_workaround import MultiWorkerFitWorkaround
from tfmtl.distribute.mixed_precision import global_dtype_policy
from tfmtl.errors import InputError
from tfmtl.features.spec import FeatureSpec
from tfmtl.layers.feature_encoder import FeatureEncoder
from tfmtl.layers.task_towers import TaskTowers
from tfmtl.tasks.chain import conditional_probability, entire_space_logit
from tfmtl.tasks.task import Task, check_tasks, task_chains
from tfmtl.weighting import replicas
from tfmtl.weighting.base import TaskWeighting
from tfmtl.weighting.conflict import gradient_cosines


class Labelled(NamedTuple):
    """One task's labels in a batch, as its loss and metrics read them."""

    label: Any  # missing (NaN) labels replaced by 0
    weight: Any  # the example's sample weight, 0 where its label is missing
    count: Any  # labelled examples in the global batch
    present: Any  # 1.0 where the label is there, whatever the sample weight


@keras.saving.register_keras_serializable(package="tfmtl")
class MultiTaskModel(MultiWorkerFitWorkaround, keras.Model):
    """Raw features -> shared encoder -> body -> one tower per task -> named outputs.

    Subclasses define the body (`SharedBottom`, `MMoE`, ...) in `__init__` and
    return its output from `body()`: one shared representation `(batch, units)` or
    one per task `(batch, num_tasks, units)`. Everything else is common: the
    `FeatureEncoder` holds all preprocessing, so the model takes raw values; each
    task gets a tower and a named output (probability, value or class
    probabilities); losses and metrics come from the tasks, with missing labels
    (NaN) masked per task; and `compile(weighting=...)` takes any task-weighting
    strategy, independent of the architecture. A funnel step chained after another
    (`Task(parent=...)`) outputs its entire-space probability, the product along
    the chain of its tower's and its ancestors' (trained on its entire-space
    label), and its probability given the parent's step as `task.conditional_output`.

    Training data is `(features, labels)` or `(features, labels, sample_weights)`
    with dicts keyed by feature name and task name; `tfmtl.data.dataset` makes them.

    Args:
        features: the `FeatureSpec` (or its config).
        tasks: the `Task`s (or their configs), in output order.
        tower_units: hidden sizes of each task tower.
        tower_activation: tower activation.
        dropout: dropout rate in the body and towers.
        fused_embeddings: one embedding table per embedding size (default) or one
            table per feature.

    Example (a new architecture: a body, and its arguments in `get_config`):

    ```python
    @keras.saving.register_keras_serializable(package="my_models")
    class OneLayerBottom(MultiTaskModel):
        def __init__(self, features, tasks, units=64, **kwargs):
            super().__init__(features, tasks, **kwargs)
            self.units = units
            self.bottom = keras.layers.Dense(units, activation="relu", name="bottom")
            self.build()

        def build_body(self, input_shape):
            self.bottom.build(input_shape)
            return self.bottom.compute_output_shape(input_shape)

        def body(self, encoded, training=None):
            return self.bottom(encoded)

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    model = OneLayerBottom(features, tasks, units=32)   # compiles, trains, saves and reloads like the zoo's
    ```
    """

    # A chained task's tower gives its probability given its parent's step and its output is the
    # product along the chain (ESMM); a model whose towers predict every step's entire-space
    # probability directly (AITM) sets this to False.
    chain_product = True

    def __init__(
        self,
        features: FeatureSpec | Mapping[str, Any],
        tasks: Sequence[Task | Mapping[str, Any]],
        tower_units: Sequence[int] = (32,),
        tower_activation: str = "relu",
        dropout: float = 0.0,
        fused_embeddings: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(features, Mapping):
            features = FeatureSpec.from_config(features)
        if not isinstance(features, FeatureSpec):
            raise InputError(f"features: expected a tfmtl.FeatureSpec, got {type(features).__name__}")
        self.feature_spec = features
        self.tasks = check_tasks([Task.from_config(t) if isinstance(t, Mapping) else t for t in tasks])
        for task in self.tasks:
            if task.label in features.names or task.sample_weight in features.names:
                column = task.label if task.label in features.names else task.sample_weight
                raise InputError(
                    f"task {task.name!r}: column {column!r} is also a feature; exclude it from the FeatureSpec"
                )
        self.tower_units = [int(u) for u in tower_units]
        self.tower_activation = tower_activation
        self.dropout = dropout
        self.fused_embeddings = fused_embeddings
        # Lookups, embedding gathers and standardisation stay float32 under mixed precision.
        with global_dtype_policy("float32"):
            self.encoder = FeatureEncoder(features, fused=fused_embeddings, name="encoder")
        self.towers = TaskTowers(
            len(self.tasks),
            self.tower_units,
            output_units=max(t.output_units for t in self.tasks),
            activation=tower_activation,
            dropout=dropout,
            name="towers",
        )
        self.task_loss_trackers = [keras.metrics.Mean(name=f"{t.name}_loss") for t in self.tasks]
        per_task = [t.metrics() for t in self.tasks]
        self.task_metrics = [m for metrics in per_task for m in metrics]
        self._metric_counts = [len(metrics) for metrics in per_task]
        self.weighting: TaskWeighting | None = None
        self.monitor_gradients = False

    # ----- architecture -------------------------------------------------------------
    def body(self, encoded: Any, training: bool | None = None) -> Any:
        """Maps the encoded features `(batch, dim)` to the towers' input."""
        raise NotImplementedError(f"{type(self).__name__} must implement body()")

    def build_body(self, input_shape: tuple) -> tuple:
        """Builds the body's layers for `input_shape` and returns its output shape."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_body()")

    def task_representations(self, inputs: Mapping[str, Any], training: bool | None = None) -> Any:
        """The towers' input for raw `inputs`: by default `body(encoder(inputs))`.

        Bodies that read the field embeddings themselves (attention over fields)
        override this and use `self.encoder.embed_fields(inputs)`.
        """
        return self.body(self.encoder(inputs), training=training)

    def task_specific_layers(self) -> list[keras.layers.Layer]:
        """Layers whose parameters each belong to one task (stacked per task).

        Gradient-level weighting strategies combine per-task gradients only for the
        other, shared parameters; these get each task's own plain gradient.
        """
        return [self.towers]

    @property
    def shared_variables(self) -> list:
        """Trainable variables that several tasks' losses reach (encoder and body).

        With chained tasks, all: a child's loss also reaches its parent's tower (and
        gate), whose weights are stacked with every other task's.
        """
        if any(task.parent is not None for task in self.tasks):
            return list(self.trainable_variables)
        specific = {id(v) for layer in self.task_specific_layers() for v in layer.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in specific]

    def build(self, input_shape: Any = None) -> None:
        # Every shape follows from the FeatureSpec, so the model builds without data.
        self.encoder.build()
        body_shape = self.build_body((None, self.encoder.output_dim))
        self.towers.build(body_shape)
        self.built = True

    def get_build_config(self) -> dict[str, Any]:
        return {}

    def build_from_config(self, config: Mapping[str, Any]) -> None:
        # Built at construction; keras-tuner's Hyperband calls this again before loading weights.
        if not self.built:
            self.build()

    def tower_logits(self, representations: Any, training: bool | None = None) -> Any:
        """The towers' logits `(batch, tasks, units)` from their input; models that link towers override it."""
        return self.towers(representations, training=training)

    def task_logits(self, inputs: Mapping[str, Any], training: bool | None = None) -> list:
        """Returns the logits of each task's output: `(batch,)`, or `(batch, classes)` for multiclass.

        A chained task's are those of its entire-space probability: what its loss and metrics read.
        """
        return self._entire_space_logits(self._step_logits(inputs, training))

    def auxiliary_logits(self, representations: Any, training: bool | None = None) -> Any:
        """Logits `(batch, n)` of towers that only the loss reads (ESCM²'s imputation towers); None here.

        Training and evaluation compute them, `predict` and serving do not.
        """
        return None

    def _step_logits(self, inputs: Mapping[str, Any], training: bool | None, for_loss: bool = False) -> list:
        """Each task's own tower logits (for a chained task under `chain_product`, given its parent's step).

        With `for_loss`, the `auxiliary_logits` follow, one tensor `(batch,)` per tower.
        """
        missing = [name for name in self.feature_spec.names if name not in inputs]
        if missing and not self.encoder.is_preprocessed(inputs):
            fused = self.fused_embeddings
            if FeatureEncoder(self.feature_spec, fused=not fused).is_preprocessed(inputs):
                raise InputError(
                    f"model input: preprocessed for fused_embeddings={not fused}, but this model has "
                    f"fused_embeddings={fused}: pass fused={fused} to tfmtl.data.dataset"
                )
            raise InputError(f"model input is missing feature(s) {missing}")
        representations = self.task_representations(inputs, training=training)
        logits = ops.cast(self.tower_logits(representations, training=training), "float32")
        # Losses, metrics and outputs in float32 under mixed precision.
        steps = [
            logits[:, i, 0] if task.output_units == 1 else logits[:, i, : task.output_units]
            for i, task in enumerate(self.tasks)
        ]
        auxiliary = self.auxiliary_logits(representations, training=training) if for_loss else None
        if auxiliary is not None:
            auxiliary = ops.cast(auxiliary, "float32")
            steps += [auxiliary[:, i] for i in range(auxiliary.shape[1])]
        return steps

    def _entire_space_logits(self, steps: list) -> list:
        if not self.chain_product:
            return steps[: len(self.tasks)]
        return [entire_space_logit([steps[i] for i in chain]) for chain in task_chains(self.tasks)]

    def call(self, inputs: Mapping[str, Any], training: bool | None = None) -> dict[str, Any]:
        steps = self._step_logits(inputs, training)
        if not self.chain_product:
            # Each tower predicts its task's entire-space probability; a chained task's conditional one follows.
            index = {task.name: i for i, task in enumerate(self.tasks)}
            outputs = {task.name: task.predictions(z) for task, z in zip(self.tasks, steps)}
            conditional = {
                task.conditional_output: conditional_probability(steps[i], steps[index[task.parent]])
                for i, task in enumerate(self.tasks)
                if task.parent is not None
            }
            return {**outputs, **conditional}
        # A chained task's output is its parent's times its own step's probability (ESMM), the product
        # itself rather than the sigmoid of its log-space logit (which the losses read): rounding a product
        # by a factor <= 1 never exceeds the parent, so p(child) <= p(parent) holds exactly.
        outputs, conditional = {}, {}
        for chain in sorted(task_chains(self.tasks), key=len):  # parents before their children
            task, z = self.tasks[chain[-1]], steps[chain[-1]]
            if len(chain) == 1:
                outputs[task.name] = task.predictions(z)
            else:
                conditional[task.conditional_output] = ops.sigmoid(z)
                outputs[task.name] = outputs[self.tasks[chain[-2]].name] * conditional[task.conditional_output]
        named = [task.conditional_output for task in self.tasks if task.parent is not None]
        return {**{task.name: outputs[task.name] for task in self.tasks}, **{name: conditional[name] for name in named}}

    # ----- training -----------------------------------------------------------------
    def compile(
        self,
        optimizer: str | keras.optimizers.Optimizer = "adam",
        weighting: str | TaskWeighting | None = None,
        *,
        steps_per_execution: int = 1,
        jit_compile: bool = False,
        run_eagerly: bool = False,
        monitor_gradients: bool = False,
        **kwargs: Any,
    ) -> None:
        """Configures training: the optimizer and how task losses are weighted.

        `monitor_gradients=True` logs, every step, the cosine similarity of each pair
        of tasks' gradients on the shared parameters (`cos_<task>_<task>`): negative
        values mean the tasks pull the shared parameters apart. It costs one backward
        pass per task. Every strategy logs its current task weights (`<task>_weight`).

        Losses and metrics come from the tasks, so `loss`, `metrics` and
        `loss_weights` are not accepted; set `Task(loss_weight=...)` or pass a
        `weighting` strategy (`"static"` by default, `"uncertainty"`, or an object
        from `tfmtl.weighting`). `jit_compile=True` compiles the steps of `fit`,
        `evaluate` and `predict` with XLA when their inputs are preprocessed (what
        `tfmtl.data.dataset` gives by default) and runs them as plain graphs when
        they are raw values, whose vocabulary lookups XLA cannot compile. It is off
        by default: on the 2-core CPU machines here it made steps about 20 % faster
        but compiling cost more than that saves over a few epochs.
        """
        for name in ("loss", "metrics", "loss_weights", "weighted_metrics"):
            if kwargs.get(name) is not None:
                raise InputError(
                    f"compile: {name}= is not used; losses and metrics come from the tasks "
                    "(Task kind and loss_weight) and weighting comes from weighting="
                )
            kwargs.pop(name, None)
        if kwargs:
            raise InputError(f"compile: unexpected argument(s) {sorted(kwargs)}")
        if not isinstance(jit_compile, bool):
            raise InputError(f"compile: jit_compile must be True or False, got {jit_compile!r}")
        replicas_in_sync = self.distribute_strategy.num_replicas_in_sync
        executed_steps = steps_per_execution
        if steps_per_execution > 1 and replicas_in_sync > 1:
            # Keras 3's multi-step loop fails at run time under any multi-replica strategy
            # ("You must feed a value for placeholder tensor", a plain Dense model too).
            warnings.warn(
                f"compile: steps_per_execution=1 instead of {steps_per_execution} with {replicas_in_sync} "
                "replicas (Keras 3 fails there: keras-team/keras#19246)",
                stacklevel=2,
            )
            executed_steps = 1
        super().compile(
            optimizer=optimizer,
            steps_per_execution=executed_steps,
            jit_compile=False,
            run_eagerly=run_eagerly,
        )
        self.jit_request = jit_compile and not run_eagerly
        self._function_jit: dict[str, bool] = {}
        self.monitor_gradients = bool(monitor_gradients)
        self.weighting = weighting_lib.get(weighting)
        self.weighting.build(self.tasks)
        # The model is built at construction, so the optimizer can be too: with the
        # strategy's variables, and without Keras' symbolic build from a data batch.
        self.optimizer.build(self.trained_variables)
        self._tfmtl_compile_config = {
            "optimizer": self.optimizer,
            "weighting": self.weighting,
            "steps_per_execution": steps_per_execution,
            "jit_compile": jit_compile,
            "monitor_gradients": self.monitor_gradients,
        }

    def get_compile_config(self) -> dict[str, Any]:
        if not self.compiled or not hasattr(self, "_tfmtl_compile_config"):
            return {}
        return {k: keras.saving.serialize_keras_object(v) for k, v in self._tfmtl_compile_config.items()}

    def compile_from_config(self, config: Mapping[str, Any]) -> None:
        config = {k: keras.saving.deserialize_keras_object(v) for k, v in config.items()}
        # `compile` has built the optimizer: a second build would give a LossScaleOptimizer
        # a second set of its own variables, which loading then skips.
        self.compile(**config)

    @property
    def trained_variables(self) -> list:
        """The variables the optimizer updates: the model's and the weighting strategy's."""
        extra = self.weighting.trainable_variables if self.weighting is not None else []
        return list(self.trainable_variables) + list(extra)

    def _labelled(self, y: Mapping[str, Any], sample_weight: Mapping[str, Any] | None) -> list:
        """Per task, its `Labelled` labels of this batch."""
        if not isinstance(y, Mapping):
            raise InputError("labels: expected a dict from task name to labels (see tfmtl.data.dataset)")
        out = []
        for task in self.tasks:
            if task.name not in y:
                raise InputError(f"labels: no labels for task {task.name!r}")
            label = ops.reshape(ops.cast(y[task.name], "float32"), (-1,))
            present = ops.logical_not(ops.isnan(label))
            weight = ops.cast(present, "float32")
            if sample_weight is not None and task.name in sample_weight:
                weight = weight * ops.reshape(ops.cast(sample_weight[task.name], "float32"), (-1,))
            count = replicas.sum_over_replicas(ops.sum(ops.cast(present, "float32")))
            out.append(Labelled(ops.where(present, label, 0.0), weight, count, ops.cast(present, "float32")))
        return out

    def _task_losses(self, labelled: list, logits: list, steps: list | None = None) -> Any:
        """Each task's loss share on this replica: its masked mean over the global batch.

        `steps` are `_step_logits`, for models whose losses read them (ESCM²).
        """
        losses = []
        for task, (label, weight, count, _), z in zip(self.tasks, labelled, logits):
            per_example = task.example_losses(label, z)
            losses.append(ops.sum(weight * per_example) / ops.maximum(count, 1.0))
        return ops.stack(losses)

    def _update_metrics(self, labelled: list, logits: list, loss: Any, task_losses: Any, batch_size: Any) -> dict:
        """Updates every metric; returns the running losses (the other results come once per execution)."""
        self._loss_tracker.update_state(loss, sample_weight=batch_size)
        start = 0
        for i, (task, (label, weight, count, _), z) in enumerate(zip(self.tasks, labelled, logits)):
            self.task_loss_trackers[i].update_state(task_losses[i], sample_weight=count)
            prediction = task.predictions(z)
            if task.output_units == 1:
                # Keras metrics reduce the last axis: give them one column per example.
                label, prediction = label[:, None], prediction[:, None]
            for metric in self.task_metrics[start : start + self._metric_counts[i]]:
                metric.update_state(label, prediction, sample_weight=weight)
            start += self._metric_counts[i]
        trackers = [self._loss_tracker, *self.task_loss_trackers]
        return {tracker.name: tracker.result() for tracker in trackers}

    def make_train_function(self, force: bool = False) -> Any:
        return self._made_with_metric_results("train_function", super().make_train_function, force)

    def make_test_function(self, force: bool = False) -> Any:
        return self._made_with_metric_results("test_function", super().make_test_function, force)

    def _made_with_metric_results(self, attribute: str, make: Any, force: bool) -> Any:
        """Keras' `make_*_function`, with the function it makes wrapped by `_with_metric_results`."""
        if getattr(self, attribute) is None or force:
            make(force=force)
            setattr(self, attribute, self._with_metric_results(getattr(self, attribute)))
        return getattr(self, attribute)

    def _with_metric_results(self, step_function: Any) -> Any:
        """`step_function`'s logs with every metric's result, computed once per call, not per step.

        Keras' steps return all metric results, so with `steps_per_execution` > 1
        every step computed results only the last one reports; AUC's result is a
        pass over all its bins. Here the steps only update the metrics.
        """
        results = self.get_metrics_result if self.run_eagerly else tf.function(self.get_metrics_result, autograph=False)

        def function(data: Any) -> dict:
            logs = step_function(data)
            return {**logs, **results()}

        return function

    def _use_xla(self, kind: str, *inputs: Any) -> None:
        """Sets `jit_compile` for the `kind` ("train", "test", "predict") function from its inputs.

        Rebuilds that function when it was made with the other setting, so one model
        can be fitted on preprocessed batches and later evaluated on raw values.
        """
        # XLA does not promise deterministic ops: `tf.config.experimental.enable_op_determinism` keeps it off.
        use = getattr(self, "jit_request", False) and not is_op_determinism_enabled()
        use = use and all(_xla_can_take(data) for data in inputs)
        if self._function_jit.get(kind, use) != use:
            setattr(self, f"{kind}_function", None)
        self._function_jit[kind] = use
        # Not through Keras' `jit_compile` setter: it refuses XLA for any model holding
        # preprocessing layers (`supports_jit = False`), which the step does not run on
        # preprocessed inputs.
        self._jit_compile = use

    def evaluate(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:
        if self.compiled:
            self._use_xla("test", x)
        return super().evaluate(x, *args, **kwargs)

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        if self.compiled:
            self._use_xla("predict", x)
        return super().predict(x, *args, **kwargs)

    def fit(self, x: Any = None, *args: Any, **kwargs: Any) -> keras.callbacks.History:
        if self.compiled:
            self._use_xla("train", x)
        if isinstance(x, (tf.data.Dataset, tf.distribute.DistributedDataset)):
            # A dataset is shuffled by its pipeline; Keras' default shuffle=True only warns.
            kwargs.setdefault("shuffle", False)
        # Strategies with epoch-level state (DWA) follow the epochs through callbacks; theirs run
        # first, so that checkpoints and backups written at an epoch's end hold that epoch's state.
        weighting_callbacks = self.weighting.callbacks() if self.weighting is not None else []
        if weighting_callbacks:
            kwargs["callbacks"] = [*weighting_callbacks, *(kwargs.get("callbacks") or [])]
        return super().fit(x, *args, **kwargs)

    def train_step(self, data: Any) -> dict:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        weighting = self.weighting
        num_replicas = replicas.num_replicas()
        per_task = weighting.uses_task_gradients or weighting.reads_task_gradients or self.monitor_gradients
        scale = self.optimizer.scale_loss
        with tf.GradientTape(persistent=per_task) as tape:
            steps = self._step_logits(x, training=True, for_loss=True)
            logits = self._entire_space_logits(steps)
            labelled = self._labelled(y, sample_weight)
            shares = self._task_losses(labelled, logits, steps)
            # Global task losses: what every strategy sees, on one device or many.
            task_losses = replicas.with_global_value(shares)
            loss = weighting.combine(task_losses)
            # Regularisers and auxiliary losses are computed on every replica: average them.
            # Layers add them in their compute dtype; under mixed precision that is not the loss's float32.
            auxiliary = 0.0
            if self.losses:
                auxiliary = ops.sum([ops.cast(aux, "float32") for aux in self.losses]) / num_replicas
            objective = scale(loss + auxiliary)
            if per_task:
                # Everything differentiated later must be computed while the tape records.
                task_objectives = [scale(shares[t]) for t in range(len(self.tasks))]
                plain_objective = scale(ops.sum(shares) + auxiliary)
                auxiliary_objective = scale(auxiliary) if self.losses else None
        logs, task_gradients = {}, None
        if not per_task:
            variables = self.trained_variables
            gradients = tape.gradient(objective, variables)
        else:
            variables, gradients, logs, task_gradients = self._gradients_from_tasks(
                tape, task_objectives, loss, objective, plain_objective, auxiliary_objective, task_losses
            )
            del tape
        gradients = self._weighting_gradients(gradients, variables, num_replicas, task_losses, task_gradients)
        # Embedding gradients arrive as IndexedSlices with repeated rows; Keras' Adam
        # would sum them twice (for g and g^2) and square before summing. Summing
        # once here is both faster and the exact Adam update.
        gradients = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients]
        # The weights this step used, read before the update changes any.
        weights = logs.pop("weights") if "weights" in logs else weighting.task_weights()
        self.optimizer.apply(gradients, variables)
        weighting.update(task_losses, task_gradients)
        results = self._update_metrics(labelled, logits, loss, task_losses, tf.shape(logits[0])[0])
        for i, task in enumerate(self.tasks):
            results[f"{task.name}_weight"] = weights[i]
        return {**results, **logs}

    def _gradients_from_tasks(
        self,
        tape: tf.GradientTape,
        task_objectives: list,
        loss: Any,
        objective: Any,
        plain_objective: Any,
        auxiliary_objective: Any,
        task_losses: Any,
    ) -> tuple:
        """Gradients when each task's gradient of the shared parameters is needed.

        For a gradient-level strategy the shared parameters get its combination of
        the tasks' global gradients and every other parameter its own task's plain
        gradient. For a loss-level one (that reads them, or with the conflict monitor
        on) every parameter gets the gradient of the combined loss; on the shared
        ones that is `sum_t (d loss / d L_t) g_t`, made from the task gradients at
        hand rather than by one more backward pass through the body. Also returns
        the tasks' global gradients of the shared parameters, one row per task.
        """
        shared = self.shared_variables
        rows = [replicas.flatten(tape.gradient(task_objective, shared), shared) for task_objective in task_objectives]
        task_gradients = replicas.sum_over_replicas(tf.stack(rows))
        logs = gradient_cosines(self.tasks, task_gradients) if self.monitor_gradients else {}
        if self.weighting.uses_task_gradients:
            combined, logs["weights"] = self.weighting.combine_gradients(task_gradients, task_losses)
            others_objective = plain_objective
        else:
            # The task losses are global, so these weights are the same on every replica.
            loss_weights = tape.gradient(loss, task_losses, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            combined = tf.linalg.matvec(task_gradients, loss_weights, transpose_a=True)
            others_objective = objective
        # `combined` is identical on every replica and the optimizer sums over replicas.
        shared_gradients = replicas.unflatten(combined / replicas.num_replicas(), shared)
        if auxiliary_objective is not None:
            auxiliary = tape.gradient(auxiliary_objective, shared)
            shared_gradients = [g if a is None else g + tf.convert_to_tensor(a) for g, a in zip(shared_gradients, auxiliary)]
        shared_ids = {id(v) for v in shared}
        others = [v for v in self.trained_variables if id(v) not in shared_ids]
        return shared + others, shared_gradients + tape.gradient(others_objective, others), logs, task_gradients

    def _weighting_gradients(
        self, gradients: list, variables: list, num_replicas: int, task_losses: Any, task_gradients: Any
    ) -> list:
        """The strategy's own variables get its `own_gradients` if it supplies them, counted once.

        They are computed from global values, so each replica has the whole gradient
        and the optimizer's sum over replicas must be divided by their number.
        """
        own = self.weighting.trainable_variables
        if not own:
            return gradients
        supplied = self.weighting.own_gradients(task_losses, task_gradients)
        position = {id(v): i for i, v in enumerate(own)}
        out = []
        for g, v in zip(gradients, variables):
            if id(v) in position:
                g = g if supplied is None else supplied[position[id(v)]]
                g = g / num_replicas if g is not None and num_replicas > 1 else g
            out.append(g)
        return out

    def test_step(self, data: Any) -> dict:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        steps = self._step_logits(x, training=False, for_loss=True)
        logits = self._entire_space_logits(steps)
        labelled = self._labelled(y, sample_weight)
        task_losses = replicas.with_global_value(self._task_losses(labelled, logits, steps))
        loss = self.weighting.combine(task_losses) if self.weighting else ops.sum(task_losses)
        return self._update_metrics(labelled, logits, loss, task_losses, tf.shape(logits[0])[0])

    # ----- saving -------------------------------------------------------------------
    def export(
        self,
        filepath: Any,
        format: str = "tf_saved_model",
        verbose: bool | None = None,
        input_signature: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Writes a TF Serving model directory `filepath/<version>/` with named, typed signatures.

        Takes `version`, `overwrite` and `warmup_data` as keywords; see
        `tfmtl.export.export_saved_model`. The signature always follows the
        FeatureSpec, so `input_signature` is not accepted.
        """
        from tfmtl.export import export_saved_model

        if format != "tf_saved_model" or input_signature is not None:
            raise InputError("export: only format='tf_saved_model' with the FeatureSpec's own signature is supported")
        return export_saved_model(self, filepath, verbose=bool(verbose), **kwargs)

    def save_own_variables(self, store: Any) -> None:
        super().save_own_variables(store)
        offset = len(self._trainable_variables + self._non_trainable_variables)
        variables = self.weighting.variables if self.weighting is not None else []
        for i, variable in enumerate(variables):
            store[f"{offset + i}"] = variable
        for i, state in enumerate(self._random_states()):
            store[f"random_state_{i}"] = state

    def load_own_variables(self, store: Any) -> None:
        own = self._trainable_variables + self._non_trainable_variables
        for i, variable in enumerate(own):
            variable.assign(store[f"{i}"])
        variables = self.weighting.variables if self.weighting is not None else []
        for i, variable in enumerate(variables):
            key = f"{len(own) + i}"
            if key in store:
                variable.assign(store[key])
        for i, state in enumerate(self._random_states()):
            if f"random_state_{i}" in store:
                state.assign(store[f"random_state_{i}"])

    def _random_states(self) -> list:
        """The state of every layer's random draws (noisy gates, dropout), which Keras does not save.

        Saved with the model, so that training resumed from a file or a backup draws
        the noise it would have drawn without the break.
        """
        return [g.state for layer in self._flatten_layers() for g in getattr(layer, "_seed_generators", [])]

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            features=self.feature_spec.get_config(),
            tasks=[t.get_config() for t in self.tasks],
            tower_units=self.tower_units,
            tower_activation=self.tower_activation,
            dropout=self.dropout,
            fused_embeddings=self.fused_embeddings,
        )
        return config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "MultiTaskModel":
        # Layers made in __init__ take the global policy: rebuild under the one the model had.
        with global_dtype_policy(config.get("dtype")):
            return cls(**config)


def _xla_can_take(data: Any) -> bool:
    """Whether a step over `data` (a dataset, tensors or arrays) can be XLA-compiled: no strings in it."""
    if isinstance(data, tf.data.Dataset):
        specs = tf.nest.flatten(data.element_spec)
        return all(getattr(spec, "dtype", None) != tf.string for spec in specs)
    if data is None:
        return True
    for value in tf.nest.flatten(data):
        dtype = getattr(value, "dtype", None)
        if dtype is None or dtype == tf.string or getattr(dtype, "kind", "") in ("O", "U", "S"):
            return False
    return True

