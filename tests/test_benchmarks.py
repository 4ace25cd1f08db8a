"""The side-by-side benchmark runs on a tiny slice and writes its table; its AUC and FLOP counts are right.

Not a timing test: the figures the benchmark measures are not checked, only that it
runs end to end (tfmtl alone here; a peer whose environment is missing is skipped).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_peers  # noqa: E402
import esmm_funnel  # noqa: E402


def test_exact_auc_is_the_share_of_correctly_ordered_pairs_with_ties_as_half():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = rng.integers(0, 8, 60) / 8  # many ties
    pairs = [(p, n) for p, n in itertools.product(scores[labels == 1], scores[labels == 0])]
    expected = np.mean([1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs])
    assert compare_peers.exact_auc(labels, scores) == pytest.approx(expected)
    assert np.isnan(compare_peers.exact_auc(np.ones(5), np.arange(5)))


def test_cvr_scores_read_the_funnel_truth_over_every_impression():
    _, test = esmm_funnel.synthetic_funnel(num_train=10, num_test=4000, num_users=50, num_items=30, seed=4)
    truth = test["conversion_probability"].to_numpy()
    exact = esmm_funnel.cvr_scores(test, truth)
    assert exact["calibration"] == pytest.approx(1.0)
    halved = esmm_funnel.cvr_scores(test, truth / 2)
    assert halved["calibration"] == pytest.approx(0.5)
    assert halved["cvr_auc_all_impressions"] == exact["cvr_auc_all_impressions"]
    assert exact["logloss_vs_truth"] < halved["logloss_vs_truth"]
    constant = esmm_funnel.cvr_scores(test, np.full(len(test), truth.mean()))
    assert constant["cvr_auc_all_impressions"] == 0.5 and exact["logloss_vs_truth"] < constant["logloss_vs_truth"]


def test_training_flops_of_the_reference_mmoe_count_every_dense_layer():
    # 33 categoricals x 8 + 6 numbers in, 8 experts of 64, 2 gates, 2 towers of 32 -> 1.
    flops = compare_peers.training_flops_per_example(270, 8, [64], [32], 2)
    forward = 2 * (8 * 270 * 64 + 2 * 270 * 8 + 2 * 8 * 64 + 2 * (64 * 32 + 32))
    assert flops["forward"] == forward
    assert flops["training"] == 3 * forward


def test_compare_peers_on_a_tiny_slice_writes_its_table_plots_and_json(census_full, monkeypatch, tmp_path):
    monkeypatch.setattr(compare_peers.tfmtl.datasets, "census_income", lambda path=None: census_full)
    folder = compare_peers.main([
        "--rows", "300", "--seeds", "1", "--systems", "tfmtl", "deepctr",
        "--deepctr-python", str(tmp_path / "no-such-python"),
        "--scaling-batch-sizes", "1024", "--scaling-experts", "8", "--scaling-tasks", "3",
        "--matmul-size", "256", "--results-dir", str(tmp_path / "results"),
    ])
    table = (folder / "results.md").read_text()
    assert "| tfmtl (tfmtl " in table
    assert "DeepCTR 0.9.4 skipped**: not installed" in table
    assert "MFLOP per training example" in table and "By tasks:" in table
    report = json.loads((folder / "results.json").read_text())
    [run] = report["runs"]
    assert "error" not in run, run
    assert set(run["auc"]) == {"income", "marital"} and run["train_rows"] == 300
    assert run["train_examples_per_second"] > 0 and run["predict_examples_per_second"] > 0 and run["peak_rss_mb"] > 0
    assert run["predict_cold_seconds"] > 0 and 0 < run["import_rss_mb"] <= run["peak_rss_mb"]
    assert [(r["num_tasks"], "error" in r) for r in report["scaling"]] == [(2, False), (3, False)]
    assert report["targets"] == []  # no peer ran, nothing to compare with
    assert sorted(p.name for p in folder.glob("*.png")) == [
        "roofline.png", "scaling_batch_size.png", "scaling_experts.png", "scaling_tasks.png", "throughput.png"]


def test_compare_peers_rotates_which_system_runs_first_from_seed_to_seed(monkeypatch, tmp_path):
    import argparse

    np.savez(tmp_path / "arrays.npz", test__labels=np.zeros((2, 2)))
    order = []

    def run_system(system, args, data, options, timeout):
        order.append(system)
        return {"system": system, "error": "not run in this test", "options": options}

    monkeypatch.setattr(compare_peers, "run_system", run_system)
    args = argparse.Namespace(models=["mmoe"], seeds=[1, 2, 3], predict_batch_size=8192, timeout=1)
    systems = ["tfmtl", "deepctr", "torch-rechub"]
    compare_peers.comparison_runs(args, systems, tmp_path, {"tasks": ["a", "b"]}, tmp_path, tmp_path / "runs.json")
    assert order == [*systems, *systems[1:], systems[0], systems[2], *systems[:2]]

def test_step_profile_on_a_tiny_slice_writes_its_table(tmp_path):
    import step_profile

    table = step_profile.main(["--rows", "2048", "--repeats", "1", "--batch-size", "512", "--out-dir", str(tmp_path)])
    text = table.read_text()
    for row in ("| forward |", "| + Adam |", "| train_step, XLA |", "| fit (1 epoch) |", "expert matmuls alone"):
        assert row in text, row
    report = json.loads((tmp_path / "step_profile.json").read_text())
    assert all(v["best_examples_per_second"] > 0 for v in report["variants"].values())


def test_synthetic_correlation_counts_the_learning_rates_kept():
    import synthetic_correlation

    chosen = {"MMoE": {0.5: [0.001, 0.003], 1.0: [0.003, 0.003]}, "PLE": {0.5: [0.01, 0.01], 1.0: [0.001, 0.01]}}
    header, _, mmoe, ple = synthetic_correlation.learning_rate_table(chosen, [0.001, 0.003, 0.01])
    assert header == "| model | 0.001 | 0.003 | 0.01 |"
    assert mmoe == "| MMoE | 1 | 3 | 0 |" and ple == "| PLE | 1 | 0 | 3 |"


def test_synthetic_correlation_pairs_each_seed_with_shared_bottom():
    import synthetic_correlation

    results = {
        "SharedBottom": {0.5: [0.014, 0.013, 0.015], 1.0: [0.012, 0.012, 0.012]},
        "MMoE": {0.5: [0.012, 0.012, 0.013], 1.0: [0.013, 0.011, 0.0125]},
    }
    header, _, row = synthetic_correlation.paired_table(results, [0.5, 1.0], "SharedBottom")
    assert header == "| model - SharedBottom | p = 0.5 | p = 1.0 |"
    assert row == "| MMoE | -0.0017 ± 0.0006 (lower in 3/3) | +0.0002 ± 0.0010 (lower in 1/3) |"
