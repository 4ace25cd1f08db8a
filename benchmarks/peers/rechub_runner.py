"""torch-rechub 0.9.0's side of `compare_peers.py`: its MMOE, SharedBottom or PLE with `MTLTrainer`, on CPU.

Runs in its own virtual environment (PyTorch, CPU build):

    python -m venv /tmp/rechub-venv
    /tmp/rechub-venv/bin/pip install torch==2.13.0 torch-rechub==0.9.0 scikit-learn
    /tmp/rechub-venv/bin/python benchmarks/peers/rechub_runner.py --data DIR --model mmoe --seed 1

Inputs are the shared encoded arrays, one `SparseFeature` of the reference embedding
size per categorical and one `DenseFeature` per number. Batches come from
torch-rechub's own `TorchDataset`/`PredictDataset` indexed a whole batch at a time
(a `BatchSampler`, reshuffled every epoch): its `DataGenerator` loaders, as in its
examples, index and collate one example at a time, which alone delivered about
9,600 examples/s on the loaded machine here (about 190,000 batched), near the
model's own speed. Training is `MTLTrainer`'s
epoch loop (`train_one_epoch`, Adam at the reference learning rate, no weight
decay) without `fit`'s per-epoch validation pass and early stopping, which are
not training; prediction is the second of two `MTLTrainer.predict` calls over the
test set. torch-rechub's MLPs put BatchNorm after every linear layer
(experts, gates and towers) and its loss is the mean of the tasks' losses: both
are its design and are left as they are.
"""

from __future__ import annotations

import os
import tempfile
from importlib.metadata import version

from common import Stopwatch, encoded_arrays, finish, model_settings, quiet, start, timed_twice

quiet()
# OpenMP threads that spin while they wait made PyTorch over 10x slower on a machine
# whose cores other jobs share (about 420 against 7,700 examples/s); set it to ACTIVE to compare.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler  # noqa: E402
from torch_rechub.basic.features import DenseFeature, SparseFeature  # noqa: E402
from torch_rechub.models.multi_task import MMOE, PLE, SharedBottom  # noqa: E402
from torch_rechub.trainers import MTLTrainer  # noqa: E402
from torch_rechub.utils.data import PredictDataset, TorchDataset  # noqa: E402


def build(model: str, settings: dict, features: list, num_tasks: int) -> torch.nn.Module:
    task_types = ["classification"] * num_tasks
    towers = [{"dims": list(settings["tower_units"])} for _ in range(num_tasks)]
    if model == "mmoe":
        return MMOE(features, task_types, n_expert=settings["num_experts"],
                    expert_params={"dims": list(settings["expert_units"])}, tower_params_list=towers)
    if model == "shared-bottom":
        return SharedBottom(features, task_types, bottom_params={"dims": list(settings["bottom_units"])},
                            tower_params_list=towers)
    return PLE(features, task_types, n_level=settings["num_levels"], n_expert_specific=settings["num_task_experts"],
               n_expert_shared=settings["num_shared_experts"], expert_params={"dims": list(settings["expert_units"])},
               tower_params_list=towers)


def batches(dataset, batch_size: int, shuffle: bool) -> DataLoader:
    """A loader whose items are whole batches: the dataset is indexed with a batch's indices at once."""
    order = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(order, batch_size, drop_last=False), batch_size=None)


def main() -> None:
    args, meta = start(__doc__.splitlines()[0])
    train_x, train_y, test_x, test_y = encoded_arrays(args.data, len(args.tasks))
    torch.manual_seed(args.seed)
    dim = meta["embedding_dim"]
    features = [SparseFeature(name, vocab_size=size, embed_dim=dim) for name, size in meta["categorical"].items()]
    features += [DenseFeature(name) for name in meta["numeric"]]
    train_x = {k: v.astype(np.int64) if k in meta["categorical"] else v for k, v in train_x.items()}
    test_x = {k: v.astype(np.int64) if k in meta["categorical"] else v for k, v in test_x.items()}
    with tempfile.TemporaryDirectory() as model_path:
        with Stopwatch() as built:
            model = build(args.model, model_settings(args, meta), features, len(args.tasks))
            trainer = MTLTrainer(model, ["classification"] * len(args.tasks),
                                 optimizer_params={"lr": meta["training"]["learning_rate"], "weight_decay": 0.0},
                                 n_epoch=args.epochs, device="cpu", model_path=model_path)
        train_loader = batches(TorchDataset(train_x, train_y.astype(np.float32)), args.batch_size, shuffle=True)
        with Stopwatch() as fit:
            for _ in range(args.epochs):
                trainer.train_one_epoch(train_loader)
    result = {
        "system": "torch-rechub",
        "versions": {"torch-rechub": version("torch-rechub"), "torch": torch.__version__,
                     "threads": torch.get_num_threads(), "OMP_WAIT_POLICY": os.environ["OMP_WAIT_POLICY"]},
        "build_seconds": built.seconds,
        "fit_seconds": fit.seconds,
    }
    predictions = None
    if not args.skip_predict:
        loader = batches(PredictDataset(test_x), args.predict_batch_size, shuffle=False)
        predictions, seconds = timed_twice(lambda: np.asarray(trainer.predict(model, loader)))
        result.update(seconds)
    finish(args, result, predictions, len(train_y), len(test_y))


if __name__ == "__main__":
    main()
