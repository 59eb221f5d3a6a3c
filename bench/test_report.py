"""The report's sections run end to end on tiny data (no timing claims)."""

from __future__ import annotations

import json

import pytest

from . import report
from .formatting import format_table
from .memory import run_memory
from .scaling import linear_fit, run_scaling


def _quiet(message):
    pass


def _met(workload, dtype, seconds, roof_fraction=0.5):
    return report._goal_met(report._goal(workload, dtype, seconds, roof_fraction))


def test_goal_check_is_honest():
    fast = {"fastbp": 1.0, "numpy": 6.0, "torch": 1.1, "jax": 1.1}
    assert _met("nielsen", "float64", fast) is True
    assert _met("nielsen", "float32", fast) is False                     # 8x there
    assert _met("nielsen", "float64", dict(fast, jax=0.9)) is False      # slower than jax
    assert _met("nielsen", "float64", {"fastbp": 1.0, "numpy": 6.0}) is None  # peers unmeasured
    assert _met("large", "float64", dict(fast, numpy=2.0), 0.89) is False    # below 90% roof
    assert _met("large", "float32", dict(fast, numpy=1.5), 0.9) is True
    # sklearn-default is against MLPClassifier, not the fast baseline
    assert _met("sklearn-default", "float32", dict(fast, numpy=1.0, sklearn=3.0)) is True
    assert _met("sklearn-default", "float32", dict(fast, numpy=9.0, sklearn=2.9)) is False
    assert report._goal("unknown", "float64", fast, 1.0) == []
    criteria = report._goal("large", "float64", dict(fast, numpy=2.0), 0.5)
    assert [met for _, met in criteria] == [True, False, True, True]


def test_peers_alternate_with_fastbp(monkeypatch):
    # a stand-in peer process: the report asks it once per block, after this
    # process's rounds, and puts its times in rows marked as its own process
    calls = []

    def fake_peer(implementation, workload, dtype, n_samples, repeats):
        calls.append((implementation, workload, dtype, repeats))
        return {"times": [0.5] * repeats, "skipped": None, "pid": 1, "version": "x"}

    monkeypatch.setattr(report, "unavailable", lambda peer, workload: None)
    rows, roofs, notes = report.run_epochs(["nielsen"], ["float32"], 200, 3, 1,
                                           peers=["torch", "jax"], blocks=2, gemm_size=256,
                                           peer_runner=fake_peer)
    assert calls == [("torch", "nielsen", "float32", 2), ("jax", "nielsen", "float32", 2),
                     ("torch", "nielsen", "float32", 1), ("jax", "nielsen", "float32", 1)]
    by_name = {row["implementation"]: row for row in rows}
    assert list(by_name) == ["fastbp", "numpy", "oracle", "torch", "jax", "roof"]
    assert by_name["torch"]["times"] == [0.5] * 3 and by_name["torch"]["process"] == "own"
    assert by_name["fastbp"]["process"] == "report" and len(by_name["fastbp"]["times"]) == 3
    assert by_name["roof"]["seconds"] > 0 and "float32" in roofs and notes == []


def test_format_table():
    text = format_table(["name", "value"], [["a", "1.0"], ["bb", "22.5"]])
    lines = text.splitlines()
    assert lines[0] == "| name | value |"
    assert lines[1] == "|------|------:|"
    assert lines[3] == "| bb   |  22.5 |"


def test_linear_fit():
    slope, intercept, r_squared = linear_fit([1, 2, 3, 4], [3, 5, 7, 9])
    assert (slope, intercept, r_squared) == pytest.approx((2.0, 1.0, 1.0))


def test_epoch_report(tmp_path, capsys):
    path = tmp_path / "report.json"
    report.main(["--samples", "300", "--repeats", "1", "--workloads", "nielsen", "medium",
                 "--dtypes", "float32", "--no-peers", "--gemm-size", "512",
                 "--json", str(path)])
    printed = capsys.readouterr().out
    assert "| nielsen  | float32 | fastbp" in printed
    assert "CPU:" in printed and "BLAS:" in printed and "Vector:" in printed
    assert "oracle (fastbp.baseline, checks and recomputes)" in printed
    assert "Goals" in printed and "Roof float32" in printed
    payload = json.loads(path.read_text())
    rows = payload["epochs"]
    assert [row["implementation"] for row in rows] == ["fastbp", "numpy", "oracle", "roof"] * 2
    for row in rows:
        assert row["seconds"] > 0 and row["gflops"] > 0
        if row["implementation"] == "numpy":
            assert row["speedup"] == pytest.approx(1.0)
        if row["implementation"] != "roof":
            assert row["roof_fraction"] == pytest.approx(
                rows[3 if row["workload"] == "nielsen" else 7]["seconds"] / row["seconds"])
    fastbp = [row for row in rows if row["implementation"] == "fastbp"]
    # without peers the "faster than torch / jax" criteria are not measured
    assert all(row["goal_met"] in (False, None) for row in fastbp)


def test_scaling_section(tmp_path):
    result, text = run_scaling(["float32"], 400, 1, str(tmp_path), _quiet)
    sweeps = result["dtypes"]["float32"]
    assert [p["n_samples"] for p in sweeps["samples"]["points"]] == [50, 100, 200, 400]
    assert [p["batch_size"] for p in sweeps["batch_size"]["points"]] == [1, 4, 16, 64, 256, 1024]
    assert [p["width"] for p in sweeps["width"]["points"]] == [16, 64, 256, 1024, 2048]
    assert "R^2" in text


def test_memory_section():
    rows, text = run_memory(["nielsen"], ["float32"], 500, _quiet)
    fastbp, baseline = rows
    assert fastbp["implementation"] == "fastbp" and baseline["implementation"] == "baseline"
    assert fastbp["peak_during_fit"] >= fastbp["rss_after_data"] > 0
    assert fastbp["heap_retained_3_epochs"] < 64 * 1024
    assert "flat" in text or "GROWS" in text


def test_epoch_report_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    picture = tmp_path / "speedups.png"
    report.main(["--samples", "200", "--repeats", "1", "--workloads", "nielsen",
                 "--dtypes", "float32", "--no-peers", "--gemm-size", "256",
                 "--json", str(tmp_path / "r.json"),
                 "--plot", str(picture)])
    capsys.readouterr()
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="--plot draws the epoch table"):
        report.main(["--memory", "--plot", str(tmp_path / "x.png")])


def test_a_time_below_the_roof_is_flagged():
    common = {"workload": "nielsen", "dtype": "float32", "times": [0.1], "spread": 0.0,
              "samples_per_second": 1.0, "gflops": 1.0, "speedup": 1.0,
              "fastbp_speedup": 1.0}
    rows = [dict(common, implementation="fastbp", label="fastbp", seconds=0.1,
                 roof_fraction=1.2, beats_roof=True),
            dict(common, implementation="roof", label="roof", seconds=0.12, times=[],
                 roof_fraction=1.0, beats_roof=False, roof_bound="memory")]
    text = report.epoch_table(rows)
    assert "120% ROOF WRONG" in text and "roof (memory bound)" in text
