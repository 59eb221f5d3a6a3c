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


def test_goal_check_is_honest():
    assert report._goal("nielsen", "float64", 6.0, 0.1) == (">= 6x: met", True)
    assert report._goal("nielsen", "float32", 7.99, 5.0)[1] is False
    assert report._goal("large", "float64", 2.0, 0.89)[1] is False    # roof fraction too low
    assert report._goal("large", "float32", 1.4, 0.9)[1] is True
    assert report._goal("unknown", "float64", 9.0, 9.0) == ("", None)


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
                 "--dtypes", "float32", "--no-torch", "--json", str(path)])
    printed = capsys.readouterr().out
    assert "| nielsen  | float32 | fastbp" in printed
    assert "CPU:" in printed and "BLAS:" in printed
    payload = json.loads(path.read_text())
    rows = payload["epochs"]
    assert [row["implementation"] for row in rows] == ["fastbp", "baseline", "roof"] * 2
    for row in rows:
        assert row["seconds"] > 0 and row["gflops"] > 0
        if row["implementation"] == "baseline":
            assert row["speedup"] == pytest.approx(1.0)
    fastbp = [row for row in rows if row["implementation"] == "fastbp"]
    assert all(row["goal_met"] in (True, False) for row in fastbp)


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
                 "--dtypes", "float32", "--no-torch", "--json", str(tmp_path / "r.json"),
                 "--plot", str(picture)])
    capsys.readouterr()
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="--plot draws the epoch table"):
        report.main(["--memory", "--plot", str(tmp_path / "x.png")])
