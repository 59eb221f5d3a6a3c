"""The digits demo, `python -m fastbp`, driven through fastbp.__main__.main(argv)."""

import re

import numpy as np
import pytest

from fastbp import Network
from fastbp.__main__ import main

FAST = ["--epochs", "2", "--hidden", "12"]

ROW = re.compile(r"^\s*(\d+)\s+(\d+\.\d+)\s+(\d+\.\d+)%\s+(\d+\.\d+)\s+(\d+\.\d+)%\s*$")


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
    """main(argv) exits (SystemExit, non-zero) with a message naming `words`."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    code = info.value.code
    assert code not in (0, None)
    message = (code if isinstance(code, str) else "") + out + err
    for word in words:
        assert word in message, message
    assert "Traceback" not in message
    return message


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--learning-rate", "-1"], ["learning_rate"]),
        (["--learning-rate", "0"], ["learning_rate"]),
        (["--learning-rate", "nan"], ["learning_rate"]),
        (["--batch-size", "0"], ["batch_size"]),
        (["--momentum", "1.0"], ["momentum"]),
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
    message = assert_clean_exit(argv + ["--epochs", "1"], capsys, *words)
    # refused before any training
    assert "final test accuracy" not in message


def test_bad_epochs_exits_with_a_clear_message(capsys):
    message = assert_clean_exit(["--epochs", "-1"], capsys, "epochs")
    assert "final test accuracy" not in message


@pytest.mark.parametrize("value", ["1.5", "0", "-0.25"])
def test_bad_test_size_exits_with_a_clear_message(capsys, value):
    assert_clean_exit(["--test-size", value, "--epochs", "1"], capsys, "test")


def test_save_into_a_missing_directory_exits_with_a_clear_message(tmp_path, capsys):
    target = tmp_path / "missing" / "net.npz"
    message = assert_clean_exit(["--epochs", "1", "--save", str(target)], capsys,
                                str(target.parent))
    assert not target.parent.exists()
    # the path is checked before the training it would otherwise waste
    assert "final test accuracy" not in message


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
