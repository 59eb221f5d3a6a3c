"""The --optimizers and --threads sections run end to end on tiny data (no timing claims)."""

from __future__ import annotations

import json
import math

import pytest
from threadpoolctl import threadpool_limits

from . import extras, report
from .extras import RULES, SINGLE_BLAS_THREAD, ThreadedFits, run_optimizers


def _quiet(message):
    pass


@pytest.fixture
def one_blas_thread():
    """BLAS at one thread, for the smoke runs of the optimizer section.

    On a busy 2-core machine every multithreaded GEMM of the medium
    workload can wait a scheduler slice for its second thread, which makes
    these runs 20x slower and tests nothing more.
    """
    with threadpool_limits(1):
        yield


def _positive(value):
    return isinstance(value, float) and math.isfinite(value) and value > 0


def _finite(value):
    return isinstance(value, float) and math.isfinite(value)


def test_sgd_check_is_honest():
    recorded = {("nielsen", "float64"): {"seconds": 0.3, "n_samples": 60000, "speedup": 5.0}}
    row = {"workload": "nielsen", "dtype": "float64", "n_samples": 20000}
    # 5 us/sample as recorded, same speed-up: no slowdown
    assert not extras._sgd_check(dict(row, fastbp_seconds=0.1, speedup=5.0), recorded)["slower"]
    # slower per sample (a busy machine) but the same speed-up: no slowdown
    assert not extras._sgd_check(dict(row, fastbp_seconds=0.2, speedup=5.0), recorded)["slower"]
    # both worse by more than the tolerance: flagged
    check = extras._sgd_check(dict(row, fastbp_seconds=0.12, speedup=4.0), recorded)
    assert check["slower"] and check["slowdown"] == pytest.approx(1.2)
    assert extras._sgd_check(dict(row, dtype="float32", fastbp_seconds=1.0, speedup=1.0),
                             recorded) is None


def test_threaded_fits_raise_a_thread_error():
    class Failing:
        def run_epoch(self):
            raise ZeroDivisionError("in the thread")

    class Fine:
        def run_epoch(self):
            return 1.0

    assert ThreadedFits([Fine(), Fine()]).run_epoch() == [1.0, 1.0]
    with pytest.raises(ZeroDivisionError, match="in the thread"):
        ThreadedFits([Fine(), Failing()]).run_epoch()


def test_optimizer_section(tmp_path, one_blas_thread):
    # a recorded epoch table to check plain SGD against, as bench/results/latest.json
    reference = tmp_path / "latest.json"
    reference.write_text(json.dumps({"date": "then", "epochs": [
        {"workload": "nielsen", "dtype": "float32", "implementation": "fastbp",
         "seconds": 0.15, "n_samples": 60000, "speedup": 6.5},
    ]}))
    result, text = run_optimizers(["nielsen", "medium"], ["float32"], 300, 1, _quiet,
                                  reference=str(reference))
    rows = result["rows"]
    expected = [(name, rule) for name in ("nielsen", "medium")
                for rule in list(RULES) + [extras.GRADIENTS_ONLY]]
    assert [(row["workload"], row["rule"]) for row in rows] == expected
    for row in rows:
        assert row["n_updates"] == math.ceil(300 / row["batch_size"])
        assert _positive(row["baseline_seconds"])
        if row["rule"] == extras.GRADIENTS_ONLY:
            continue
        assert _positive(row["fastbp_seconds"]) and _positive(row["speedup"])
        assert _finite(row["baseline_full_update_us"])
        assert len(row["fastbp_times"]) == len(row["baseline_times"]) == 1
        if row["rule"] == "sgd":
            assert row["fastbp_update_us"] is None and row["fused_cheaper"] is None
        else:
            # differences of noisy times: finite, of either sign at this size
            assert _finite(row["fastbp_update_us"]) and _finite(row["baseline_update_us"])
            assert row["fused_cheaper"] in (True, False)
    assert result["compared"] == 2 * (len(RULES) - 1)
    (check,) = result["sgd_check"]["rows"]
    assert (check["workload"], check["dtype"]) == ("nielsen", "float32")
    assert check["slower"] in (True, False)
    for rule in RULES:
        assert f"| {rule} " in text
    assert "fused update cheaper" in text and "recorded epoch table" in text


def test_optimizer_report_writes_its_json(tmp_path, monkeypatch, capsys, one_blas_thread):
    monkeypatch.setattr(report, "RESULTS_DIR", str(tmp_path))
    report.main(["--optimizers", "--samples", "200", "--repeats", "1",
                 "--workloads", "nielsen", "large", "--dtypes", "float64"])
    printed = capsys.readouterr().out
    assert "## Optimizer updates (200 samples" in printed
    assert "Data:     200 samples" in printed
    # no recorded epoch table in this RESULTS_DIR: said, not failed
    assert "no recorded epoch table" in printed
    payload = json.loads((tmp_path / "optimizers.json").read_text())
    assert payload["settings"]["sections"] == ["optimizers"]
    section = payload["optimizers"]
    assert section["workloads"] == ["nielsen"]          # large has no optimizer rows
    assert len(section["rows"]) == len(RULES) + 1


def test_threads_section(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report, "RESULTS_DIR", str(tmp_path))
    report.main(["--threads", "--samples", "200", "--repeats", "1",
                 "--workloads", "nielsen", "large", "--dtypes", "float64", "float32"])
    assert "## Two trainers in two threads" in capsys.readouterr().out
    section = json.loads((tmp_path / "threads.json").read_text())["threads"]
    rows = section["rows"]
    assert [(row["dtype"], row["workload"], row["blas_threads"] == SINGLE_BLAS_THREAD)
            for row in rows] == [(dtype, name, single) for dtype in ("float64", "float32")
                                 for name in ("nielsen", "large") for single in (False, True)]
    for row in rows:
        for key in ("seconds_1_thread", "seconds_2_threads", "samples_per_second_1_thread",
                    "samples_per_second_2_threads", "ratio"):
            assert _positive(row[key]), key
        assert row["samples_per_second_2_threads"] == pytest.approx(
            2 * 200 / row["seconds_2_threads"])
        assert row["weights_identical"] in (True, False)
        if row["blas_threads"] == SINGLE_BLAS_THREAD:
            # bit-identical to the trainer alone: a correctness claim, not a speed one
            assert row["weights_identical"], row
    assert section["weights_identical_with_1_blas_thread"] is True

