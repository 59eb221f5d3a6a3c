"""The demo's optimization options: --optimizer, --schedule, --patience and
--learning-curve (with --train-size, --curve-l2, --every, --plot)."""

import re
import sys

import pytest

from fastbp.__main__ import main

ROW = re.compile(r"^\s*(\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)%\s+(\d+\.\d+)\s+(\d+\.\d+)%")
WATCHED_ROW = re.compile(ROW.pattern + r"\s+(\d+\.\d+)\s+(\d+\.\d+)%\s+(\S+)\s*$")
_RUN = r"\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)%"
CURVE_ROW = re.compile(rf"^\s*(\d+) \|{_RUN} \|{_RUN}\s*$")


def run(capsys, argv):
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return out, err


def final_accuracy(out):
    return float(re.search(r"final test accuracy: (\d+\.\d+)%", out).group(1))


def usage_error(capsys, argv, *words):
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    assert info.value.code not in (0, None)
    message = (info.value.code if isinstance(info.value.code, str) else "") + out + err
    for word in words:
        assert word in message, message
    assert "Traceback" not in message and "final test accuracy" not in message


# ------------------------------------------------------------------ --optimizer


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam", "adamw"])
def test_each_optimizer_learns_the_digits(capsys, optimizer):
    out, _ = run(capsys, ["--optimizer", optimizer, "--epochs", "5"])
    assert f"optimizer='{optimizer}'" in out
    rows = [ROW.match(line) for line in out.splitlines() if ROW.match(line)]
    assert len(rows) == 5
    # with the default rate for each rule, five epochs are far above chance
    assert final_accuracy(out) > 85


def test_adaptive_optimizers_default_to_a_small_learning_rate(capsys):
    out, _ = run(capsys, ["--optimizer", "adam", "--epochs", "1"])
    assert "learning_rate=0.01," in out
    out, _ = run(capsys, ["--optimizer", "adam", "--learning-rate", "0.003", "--epochs", "1"])
    assert "learning_rate=0.003," in out
    out, _ = run(capsys, ["--epochs", "1"])
    assert "learning_rate=0.5," in out


def test_momentum_with_adam_is_refused_with_the_reason(capsys):
    usage_error(capsys, ["--optimizer", "adam", "--momentum", "0.9", "--epochs", "1"],
                "momentum")


def test_unknown_optimizer_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--optimizer", "lion"])
    assert info.value.code == 2
    assert "--optimizer" in capsys.readouterr().err


# ------------------------------------------------------------------ --schedule


@pytest.mark.parametrize("schedule, name", [
    ("step", "StepDecay"),
    ("exponential", "ExponentialDecay"),
    ("invscaling", "InverseScaling"),
])
def test_schedules_are_used(capsys, schedule, name):
    out, _ = run(capsys, ["--schedule", schedule, "--epochs", "2"])
    assert f"schedule={name}(" in out
    assert len([line for line in out.splitlines() if ROW.match(line)]) == 2


def test_constant_schedule_is_the_default_output(capsys):
    default, _ = run(capsys, ["--epochs", "2", "--hidden", "12"])
    constant, _ = run(capsys, ["--epochs", "2", "--hidden", "12", "--schedule", "constant"])
    strip = re.compile(r"trained 2 epochs in .* s")
    assert strip.sub("", default) == strip.sub("", constant)
    assert "schedule=" not in default and "validation:" not in default


def test_plateau_schedule_watches_a_validation_split(capsys):
    out, _ = run(capsys, ["--schedule", "plateau", "--epochs", "3"])
    assert "schedule=ReduceOnPlateau(" in out
    assert "validation: 10% of the training samples" in out
    assert re.search(r"test acc\s+val loss\s+val acc\s+rate", out)
    rows = [WATCHED_ROW.match(line) for line in out.splitlines() if WATCHED_ROW.match(line)]
    assert [int(row.group(1)) for row in rows] == [1, 2, 3]
    assert all(float(row.group(8)) == 0.5 for row in rows)


# ------------------------------------------------------------------ --patience


def test_patience_stops_early_and_keeps_the_best_epoch(capsys):
    out, _ = run(capsys, ["--patience", "2", "--epochs", "100"])
    stopped = re.search(r"early stopping after epoch (\d+): the best val_loss (\d+\.\d+) "
                        r"was at epoch (\d+)", out)
    assert stopped is not None, out
    last, best = int(stopped.group(1)), int(stopped.group(3))
    rows = {int(m.group(1)): m for m in map(WATCHED_ROW.match, out.splitlines()) if m}
    assert sorted(rows) == list(range(1, last + 1)) and last < 100
    assert last == best + 2
    # the best epoch's val loss, and the restored network's test accuracy
    assert float(rows[best].group(6)) == pytest.approx(float(stopped.group(2)), abs=1e-4)
    assert final_accuracy(out) == pytest.approx(float(rows[best].group(5)), abs=0.01)
    assert f"trained {last} epochs" in out


def test_negative_patience_is_a_usage_error(capsys):
    usage_error(capsys, ["--patience", "-1"], "--patience")


# ------------------------------------------------------------------ --learning-curve

CURVE = ["--learning-curve", "--epochs", "40", "--train-size", "200", "--every", "10"]


def curve_rows(out):
    rows = {}
    for line in out.splitlines():
        match = CURVE_ROW.match(line)
        if match:
            values = [float(v) for v in match.groups()[1:]]
            rows[int(match.group(1))] = (values[:3], values[3:])
    return rows


def test_learning_curve_prints_both_runs_side_by_side(capsys):
    out, _ = run(capsys, CURVE)
    assert "digits: 200 of 1347 training samples, 450 test samples" in out
    assert re.search(r"\|\s+l2 = 0\s+\|\s+l2 = 0.0003", out)
    assert re.search(r"epoch \| train loss\s+test loss\s+test acc \| train loss", out)
    rows = curve_rows(out)
    assert sorted(rows) == [1, 10, 20, 30, 40]
    (plain_train, plain_test, _), (l2_train, l2_test, _) = rows[40]
    # overfitting: far lower loss on the training subset than on the test set
    assert plain_test > 2 * plain_train
    # L2 keeps the training loss higher and narrows the gap
    assert l2_train > plain_train
    assert l2_test - l2_train < plain_test - plain_train
    gaps = re.findall(r"test - train loss gap (\d+\.\d+) after 40 epochs", out)
    assert len(gaps) == 2 and float(gaps[1]) < float(gaps[0])
    assert "final test accuracy" in out


def test_learning_curve_is_deterministic_and_takes_curve_l2(capsys):
    first, _ = run(capsys, CURVE + ["--curve-l2", "0.001", "--seed", "2"])
    second, _ = run(capsys, CURVE + ["--curve-l2", "0.001", "--seed", "2"])
    assert curve_rows(first) == curve_rows(second)
    assert "l2 = 0.001" in first


def test_learning_curve_with_another_optimizer(capsys):
    out, _ = run(capsys, ["--learning-curve", "--epochs", "5", "--train-size", "100",
                          "--optimizer", "adam", "--schedule", "step"])
    assert "optimizer='adam'" in out and "StepDecay" in out
    assert sorted(curve_rows(out)) == [1, 2, 3, 4, 5]


def test_plot_writes_a_png(capsys, tmp_path):
    path = tmp_path / "curve.png"
    out, _ = run(capsys, CURVE + ["--plot", str(path)])
    assert f"wrote the learning curves to {path}" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_so(capsys, tmp_path, monkeypatch):
    # None in sys.modules makes the import fail, as if it were not installed
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    path = tmp_path / "curve.png"
    assert main(CURVE + ["--plot", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "--plot needs matplotlib" in err and "pip install matplotlib" in err
    assert len(curve_rows(out)) == 5          # the table is still there
    assert not path.exists()


@pytest.mark.parametrize("argv, words", [
    (["--plot", "x.png"], ["--plot", "--learning-curve"]),
    (["--every", "3"], ["--every", "--learning-curve"]),
    (["--learning-curve", "--patience", "3"], ["--patience", "--learning-curve"]),
    (["--learning-curve", "--schedule", "plateau"], ["plateau", "--learning-curve"]),
    (["--learning-curve", "--save", "net.npz"], ["--save", "--learning-curve"]),
    (["--learning-curve", "--train-size", "0"], ["--train-size"]),
    (["--learning-curve", "--train-size", "5000"], ["--train-size", "1347"]),
    (["--learning-curve", "--every", "0"], ["--every"]),
    (["--learning-curve", "--curve-l2", "-1", "--epochs", "1"], ["l2"]),
])
def test_bad_learning_curve_options_are_refused(capsys, argv, words):
    usage_error(capsys, argv, *words)
