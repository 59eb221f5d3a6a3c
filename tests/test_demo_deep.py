"""The demo's --deep: the vanishing gradient of a deep sigmoid network, next to relu."""

import re

import pytest

from fastbp.__main__ import deep_norms, load_digits_split, main

pytest.importorskip("sklearn")


def test_deep_sigmoid_gradients_vanish_relative_to_relu(capsys):
    assert main(["--deep", "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    ratios = dict(re.findall(r"^(sigmoid|relu): first / last layer ([0-9.e+-]+)", out, re.M))
    rows = re.findall(r"^\s+(\d) +\d+x\d+ +([0-9.e+-]+) +([0-9.e+-]+)$", out, re.M)
    assert [int(layer) for layer, _, _ in rows] == [1, 2, 3, 4, 5]
    # measured: sigmoid first/last ~0.007, relu ~1 (seed 0, 2-3 epochs): > 100x apart
    assert float(ratios["sigmoid"]) * 10 <= float(ratios["relu"])
    # and the sigmoid net's norms shrink layer after layer on the way down
    sigmoid = [float(value) for _, value, _ in rows]
    assert sigmoid == sorted(sigmoid)


def test_deep_norms_per_epoch():
    class Args:
        deep_hidden = [8, 8]
        activation = "sigmoid"
        output = "sigmoid"
        dtype = "float64"
        seed = 0
        loss = "cross_entropy"
        learning_rate = 0.5
        batch_size = 10
        l2 = 1e-4
        momentum = 0.0
        optimizer = "sgd"
        schedule = "constant"
        epochs = 2

    X_train, _, y_train, _ = load_digits_split()
    _, _, history = deep_norms(Args, X_train, y_train, "relu")
    assert len(history["grad_norms"]) == 2
    assert all(len(epoch) == 3 for epoch in history["grad_norms"])


@pytest.mark.parametrize("argv", [["--deep", "--learning-curve"], ["--deep", "--save", "x.npz"],
                                  ["--deep", "--deep-hidden", "0"]])
def test_deep_refuses_what_does_not_fit(argv):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
