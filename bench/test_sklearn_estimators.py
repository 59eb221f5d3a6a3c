"""fastbp.sklearn against scikit-learn (bench/estimators.py) runs end to end on small data.

No timing claims: only that both libraries' processes run the same fits
(same epochs, same losses to rounding), that the report's section and the
digits comparison produce their tables, and that unequal whole fits are
refused. FASTBP_BENCH_SAMPLES (2000 in CI) sets the size of the real runs.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

pytest.importorskip("sklearn")

from . import estimators, report  # noqa: E402
from .estimators import (  # noqa: E402
    CASES,
    DEFAULT_CASES,
    digits_accuracy,
    profile_fastbp,
    regression_targets,
    run_estimator_peer,
    run_estimators,
)
from .workloads import make_data  # noqa: E402

LOSS_RTOL = {"float64": 1e-10, "float32": 1e-5}


def _quiet(message):
    pass


def _positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_regression_targets():
    X64, _ = make_data(500, "float64")
    X32, _ = make_data(500, "float32")
    T64, T32 = regression_targets(X64), regression_targets(X32)
    assert T64.shape == T32.shape == (500, 10)
    assert T64.dtype == np.float64 and T32.dtype == np.float32
    np.testing.assert_array_equal(T64, regression_targets(X64))         # deterministic
    np.testing.assert_allclose(T32, T64, rtol=1e-5, atol=1e-5)
    assert 0.5 < float(T64.std()) < 2.0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_libraries_fit_the_same_in_their_own_processes(n_samples, dtype):
    results = {library: run_estimator_peer(library, "MLPClassifier", dtype, "auto", n_samples,
                                           epochs=2, repeats=1, fit_repeats=1, fit_max_iter=3,
                                           timeout=300)
               for library in estimators.LIBRARIES}
    for library, result in results.items():
        assert result["library"] == library and result["pid"] != os.getpid()
        assert result["epoch_n_iter"] == [2] and len(result["epoch_times"]) == 1
        assert result["epoch_times"][0] == pytest.approx(result["epoch_fit_times"][0] / 2)
        assert result["fit_n_iter"] == [3] and _positive(result["fit_times"][0])
        # the whole fit's epochs, clocked through verbose=True: 3 of them, summing to its time
        assert len(result["fit_epoch_times"]) == 3
        assert 0 < sum(result["fit_epoch_times"]) <= result["fit_times"][0]
    np.testing.assert_allclose(results["fastbp"]["loss_curve"], results["sklearn"]["loss_curve"],
                               rtol=LOSS_RTOL[dtype])
    assert results["fastbp"]["fit_loss"] == pytest.approx(results["sklearn"]["fit_loss"],
                                                          rel=LOSS_RTOL[dtype])


def _stand_in(calls, n_iter=None, envs=None, whole_fit_slowdown=1.0, clocks=None):
    """A stand-in for run_estimator_peer: fixed times, sklearn 3x slower, records its calls.

    clocks: library -> the whole fit's epoch times (None: not clocked).
    """
    envs = [] if envs is None else envs
    clocks = clocks or {}

    def runner(library, estimator, dtype, batch_size, n_samples, epochs, repeats, fit_repeats,
               fit_max_iter, env=None):
        calls.append((library, estimator, dtype, batch_size, repeats, fit_repeats))
        envs.append(env)
        scale = 3.0 if library == "sklearn" else 1.0
        stop = n_iter[library] if n_iter else 7
        return {"library": library, "epochs": epochs, "pid": 1, "version": "x", "threads": 1,
                "epoch_fit_times": [scale * epochs] * repeats, "epoch_times": [scale] * repeats,
                "epoch_n_iter": [epochs] * repeats, "loss_curve": [2.0] * epochs,
                "fit_times": [scale * stop * (whole_fit_slowdown if library == "sklearn" else 1)]
                * fit_repeats, "fit_n_iter": [stop] * fit_repeats,
                "fit_loss": [1.0] * fit_repeats,
                "fit_epoch_times": clocks.get(library) if fit_repeats else None}

    return runner


def test_section_alternates_the_libraries():
    calls = []
    result, text = run_estimators(["float32"], 100, ["classifier", "classifier-b32"], epochs=2,
                                  repeats=3, blocks=2, fit_repeats=1, fit_max_iter=200,
                                  log=_quiet, runner=_stand_in(calls))
    # blocks of 2 and 1 fits; fastbp first, then scikit-learn first; whole fits in the last
    assert calls[:4] == [("fastbp", "MLPClassifier", "float32", "auto", 2, 0),
                         ("sklearn", "MLPClassifier", "float32", "auto", 2, 0),
                         ("sklearn", "MLPClassifier", "float32", "auto", 1, 1),
                         ("fastbp", "MLPClassifier", "float32", "auto", 1, 1)]
    assert [call[3] for call in calls[4:]] == [32] * 4
    first, second = result["rows"]
    assert first["ratio"] == pytest.approx(3.0) and first["fit_ratio"] == pytest.approx(3.0)
    assert len(first["fastbp_epoch_times"]) == 3 and first["fit_n_iter"] == 7
    assert first["fit_stopped_by"] == "tol" and first["met"] is True     # >= 3x
    assert second["met"] is False                                        # >= 5x at batch 32
    assert "| MLPClassifier | float32 | auto (200) |" in text and "7 (tol)" in text
    assert "NOT met" in text and "max_iter=200)" in text


def test_busy_whole_fit_is_flagged_and_blas_threads_reach_the_processes():
    envs = []
    result, text = run_estimators(["float64"], 100, ["classifier"], repeats=2, log=_quiet,
                                  runner=_stand_in([], envs=envs, whole_fit_slowdown=2.0),
                                  blas_threads=1)
    (row,) = result["rows"]
    assert row["noise"]["noisy"] and "sklearn whole fit 6 s/epoch vs 3" in text
    assert row["best_ratio"] == pytest.approx(3.0) and row["fit_ratio"] == pytest.approx(6.0)
    assert envs and all(env["OPENBLAS_NUM_THREADS"] == "1" for env in envs)
    assert "OPENBLAS_NUM_THREADS=1 for both" in text
    _, text = run_estimators(["float64"], 100, ["classifier"], repeats=1, log=_quiet,
                             runner=_stand_in([], envs=envs))
    assert envs[-1] is None and "max +-0%" in text


def test_whole_fit_epoch_clocks():
    # sklearn's epochs slow down steadily (as subnormal numbers would make them): a trend
    # under the table, not noise; a single slow epoch among steady ones: noise
    fastbp = [1.0] * 7
    steady_slowdown = [3.0, 3.0, 3.0, 4.0, 6.0, 8.0, 9.0]
    result, text = run_estimators(["float32"], 100, ["classifier"], epochs=2, repeats=2,
                                  log=_quiet, runner=_stand_in(
                                      [], clocks={"fastbp": fastbp, "sklearn": steady_slowdown}))
    (row,) = result["rows"]
    assert not row["noise"]["noisy"], row["noise"]
    assert "changed speed during the fit" in text and "sklearn's epochs went from 3 s" in text
    assert "fastbp's epochs" not in text
    spike = [3.0, 3.0, 3.0, 3.0, 12.0, 3.0, 3.0]
    result, text = run_estimators(["float32"], 100, ["classifier"], epochs=2, repeats=2,
                                  log=_quiet, runner=_stand_in(
                                      [], clocks={"fastbp": fastbp, "sklearn": spike}))
    (row,) = result["rows"]
    assert row["noise"]["noisy"] and "1 epoch(s) over 1.5x their neighbours" in text
    busy_start = [9.0, 9.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    result, text = run_estimators(["float32"], 100, ["classifier"], epochs=2, repeats=2,
                                  log=_quiet, runner=_stand_in(
                                      [], clocks={"fastbp": fastbp, "sklearn": busy_start}))
    assert "sklearn whole fit's first 2 epochs 9 s/epoch vs 3" in text


def test_unequal_whole_fits_are_refused():
    with pytest.raises(AssertionError, match="different n_iter_"):
        run_estimators(["float64"], 100, ["regressor"], repeats=1, log=_quiet,
                       runner=_stand_in([], n_iter={"fastbp": 12, "sklearn": 13}))
    # no whole fit: the per-epoch ratio alone, and the goal undecided when it is reached
    result, text = run_estimators(["float64"], 100, ["regressor"], repeats=1, fit_repeats=0,
                                  log=_quiet, runner=_stand_in([]))
    (row,) = result["rows"]
    assert row["fit_ratio"] is None and row["met"] is None and "not measured" in text


def test_report_section(n_samples, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "RESULTS_DIR", str(tmp_path))
    report.main(["--estimators", "--samples", str(n_samples), "--dtypes", "float64",
                 "--estimator-cases", "classifier", "regressor", "--estimator-repeats", "1",
                 "--estimator-epochs", "2", "--fit-max-iter", "3", "--digits-seeds", "0",
                 "--digits-max-iter", "20"])
    printed = capsys.readouterr().out
    assert "CPU:" in printed and "Vector:" in printed and "BLAS:" in printed
    assert "## fastbp.sklearn against scikit-learn" in printed
    assert "| MLPRegressor  | float64 | auto (200) |" in printed
    assert "capped from the default 200" in printed
    assert "## Accuracy on the digits" in printed
    payload = json.loads((tmp_path / "estimators.json").read_text())
    assert payload["settings"]["sections"] == ["estimators"]
    rows = payload["estimators"]["rows"]
    assert [row["estimator"] for row in rows] == ["MLPClassifier", "MLPRegressor"]
    for row in rows:
        assert row["n_samples"] == n_samples and row["fit_n_iter"] == 3
        assert _positive(row["ratio"]) and _positive(row["fit_ratio"])
        assert row["loss_curve_relative_difference"] < LOSS_RTOL["float64"]
    (digits,) = payload["digits"]["rows"]
    assert 0.5 < digits["fastbp_accuracy"] <= 1 and 0.5 < digits["sklearn_accuracy"] <= 1
    assert digits["fastbp_n_iter"] == digits["sklearn_n_iter"] == 20


def test_compare_command(tmp_path, capsys):
    path = tmp_path / "compare.json"
    estimators.main(["compare", "--samples", "300", "--dtypes", "float32", "--cases",
                     "regressor-b32", "--repeats", "1", "--fit-repeats", "0", "--no-digits",
                     "--json", str(path)])
    assert "| MLPRegressor | float32 | 32 " in capsys.readouterr().out
    (row,) = json.loads(path.read_text())["estimators"]["rows"]
    assert row["goal"] == CASES["regressor-b32"].goal and row["fit_ratio"] is None


def test_digits_accuracy_within_a_point():
    # the same maths: at a few epochs both reach the same test accuracy
    result, text = digits_accuracy(seeds=[1], max_iter=15, dtypes=["float32"], log=_quiet)
    (row,) = result["rows"]
    assert row["n_train"] + row["n_test"] == 1797
    assert abs(row["difference_pp"]) <= 1.0 and result["within_tolerance"]
    assert "pp" in text and "float32" in text


def test_profile():
    result, text = profile_fastbp(400, "float32", batch_size=32, epochs=2, repeats=1,
                                  log=_quiet)
    assert all(_positive(value) for value in result["seconds"].values())
    assert 0 < result["cprofile_kernel"] <= result["cprofile_total"]
    assert "kernel epoch" in text and "_run_epoch" in text


def test_default_cases_are_the_issues():
    assert [(CASES[name].estimator, CASES[name].batch_size, CASES[name].goal)
            for name in DEFAULT_CASES] == [("MLPClassifier", "auto", 3.0),
                                           ("MLPClassifier", 32, 5.0),
                                           ("MLPRegressor", "auto", 3.0)]
