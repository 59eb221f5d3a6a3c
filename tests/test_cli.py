"""The digits demo, `python -m fastbp`: driven through fastbp.__main__.main(argv),
and once as the command itself. Its table and options, its optimization
options (--optimizer, --schedule, --patience, --learning-curve with
--train-size, --curve-l2, --every, --plot), and its refusals of bad options.
"""

import re
import subprocess
import sys

import numpy as np
import pytest

from fastbp import Network
from fastbp.__main__ import main

FAST = ["--epochs", "2", "--hidden", "12"]

# a row of the table: epoch, train loss, train acc, test loss, test acc, and
# (ROW) nothing after them or (WATCHED_ROW) val loss, val acc and rate
ROW_START = re.compile(r"^\s*(\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)%\s+(\d+\.\d+)\s+(\d+\.\d+)%")
ROW = re.compile(ROW_START.pattern + r"\s*$")


def table_rows(text):
    return [ROW.match(line).groups() for line in text.splitlines() if ROW.match(line)]


def test_runs_and_prints_one_row_per_epoch(capsys):
    assert main(FAST + ["--epochs", "3"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert re.search(r"epoch\s+train loss\s+train acc\s+test loss\s+test acc", out)
    rows = table_rows(out)
    assert [int(row[0]) for row in rows] == [1, 2, 3]
    for _, train_loss, train_acc, test_loss, test_acc in rows:
        assert float(train_loss) > 0 and float(test_loss) > 0
        assert 0 <= float(train_acc) <= 100 and 0 <= float(test_acc) <= 100
    final = re.search(r"final test accuracy: (\d+\.\d+)%", out)
    assert final is not None
    # a few epochs on the digits already beat chance (10 %) by far
    assert float(final.group(1)) > 50
    assert float(final.group(1)) == pytest.approx(float(rows[-1][4]), abs=0.01)
    # the network and trainer are described
    assert "[64, 12, 10]" in out


def test_demo_command_runs():
    completed = subprocess.run(
        [sys.executable, "-m", "fastbp", "--epochs", "5"],
        capture_output=True, text=True, timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert "final test accuracy" in completed.stdout
    accuracy = float(completed.stdout.split("final test accuracy:")[1].split("%")[0])
    assert accuracy > 80


def test_same_arguments_give_the_same_output(capsys):
    main(FAST + ["--seed", "3"])
    first = table_rows(capsys.readouterr().out)
    main(FAST + ["--seed", "3"])
    second = table_rows(capsys.readouterr().out)
    assert first == second and len(first) == 2


@pytest.mark.parametrize(
    "options",
    [
        ["--hidden"],                               # no hidden layer
        ["--hidden", "6", "5", "--activation", "relu"],
        ["--output", "softmax", "--loss", "cross_entropy", "--dtype", "float32"],
        ["--output", "identity", "--loss", "mse", "--learning-rate", "0.05"],
        ["--momentum", "0.5", "--batch-size", "32", "--l2", "0", "--test-size", "0.5"],
    ],
    ids=["no-hidden", "relu", "softmax-float32", "identity-mse", "momentum"],
)
def test_options(capsys, options):
    assert main(["--epochs", "1", *options]) == 0
    out, _ = capsys.readouterr()
    assert len(table_rows(out)) == 1
    assert "final test accuracy" in out


def test_save_writes_a_loadable_network(tmp_path, capsys):
    path = tmp_path / "digits.npz"
    assert main(FAST + ["--dtype", "float32", "--save", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert str(path) in out
    net = Network.load(path)
    assert net.layer_sizes == [64, 12, 10]
    assert net.dtype == np.float32
    # the saved network is the trained one: it reproduces the printed accuracy
    from fastbp.__main__ import load_digits_split

    _, X_test, _, y_test = load_digits_split(0.25, 0, "float32")
    accuracy = np.mean(net.predict(X_test) == y_test) * 100
    printed = float(re.search(r"final test accuracy: (\d+\.\d+)%", out).group(1))
    assert accuracy == pytest.approx(printed, abs=0.01)


def test_save_without_suffix_writes_that_path(tmp_path, capsys):
    path = tmp_path / "model"
    assert main(["--epochs", "1", "--save", str(path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert Network.load(path).layer_sizes == [64, 30, 10]


def assert_clean_exit(argv, capsys, *words):
    """main(argv) exits (SystemExit, non-zero) with a message naming `words`,
    without a traceback and before any training."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    assert code not in (0, None)
    message = (code if isinstance(code, str) else "") + out + err
    for word in words:
        assert word in message, message
    assert "Traceback" not in message
    assert "final test accuracy" not in message
    return message


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--learning-rate", "-1"], ["learning_rate"]),
        (["--learning-rate", "0"], ["learning_rate"]),
        (["--learning-rate", "nan"], ["learning_rate"]),
        (["--batch-size", "0"], ["batch_size"]),
        (["--momentum", "1.5"], ["momentum"]),
        (["--l2", "-0.5"], ["l2"]),
        (["--hidden", "0"], ["layer_sizes"]),
        (["--hidden", "-3"], ["layer_sizes"]),
        (["--seed", "-1"], ["seed"]),
        (["--output", "identity", "--loss", "cross_entropy"], ["cross_entropy"]),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) and value[0].startswith("-")
    else None,
)
def test_bad_option_values_exit_with_a_clear_message(capsys, argv, words):
    assert_clean_exit(argv + ["--epochs", "1"], capsys, *words)


def test_bad_epochs_exits_with_a_clear_message(capsys):
    assert_clean_exit(["--epochs", "-1"], capsys, "epochs")


@pytest.mark.parametrize("value", ["1.5", "0", "-0.25"])
def test_bad_test_size_exits_with_a_clear_message(capsys, value):
    assert_clean_exit(["--test-size", value, "--epochs", "1"], capsys, "test")


def test_save_into_a_missing_directory_exits_with_a_clear_message(tmp_path, capsys):
    target = tmp_path / "missing" / "net.npz"
    # the path is checked before the training it would otherwise waste
    assert_clean_exit(["--epochs", "1", "--save", str(target)], capsys, str(target.parent))
    assert not target.parent.exists()


@pytest.mark.parametrize(
    "argv",
    [["--epochs", "many"], ["--activation", "swish"], ["--output", "relu"],
     ["--dtype", "float16"], ["--learning-rate"], ["--bogus"]],
    ids=" ".join,
)
def test_malformed_options_are_argparse_errors(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert "usage:" in err and "error:" in err
    assert "Traceback" not in out + err


def test_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out, _ = capsys.readouterr()
    assert "usage:" in out
    for option in ("--epochs", "--hidden", "--learning-rate", "--batch-size", "--l2",
                   "--momentum", "--dtype", "--save", "--seed"):
        assert option in out


# ================================================ the optimization options

WATCHED_ROW = re.compile(ROW_START.pattern + r"\s+(\d+\.\d+)\s+(\d+\.\d+)%\s+(\S+)\s*$")
_RUN = r"\s+(\d+\.\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)%"
CURVE_ROW = re.compile(rf"^\s*(\d+) \|{_RUN} \|{_RUN}\s*$")


def run(capsys, argv):
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return out, err


def final_accuracy(out):
    return float(re.search(r"final test accuracy: (\d+\.\d+)%", out).group(1))


# ------------------------------------------------------------------ --optimizer


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adam", "adamw"])
def test_each_optimizer_learns_the_digits(capsys, optimizer):
    out, _ = run(capsys, ["--optimizer", optimizer, "--epochs", "5"])
    assert f"optimizer='{optimizer}'" in out
    rows = [ROW_START.match(line) for line in out.splitlines() if ROW_START.match(line)]
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
    assert_clean_exit(["--optimizer", "adam", "--momentum", "0.9", "--epochs", "1"], capsys,
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
    assert len([line for line in out.splitlines() if ROW_START.match(line)]) == 2


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
    assert_clean_exit(["--patience", "-1"], capsys, "--patience")


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
    assert_clean_exit(argv, capsys, *words)
