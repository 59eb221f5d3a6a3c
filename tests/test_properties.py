"""Property tests: random architectures, batch sizes and data against the oracle.

hypothesis draws the layer sizes (widths 1-12, one to four weight layers),
the per-layer hidden activations, the (output, loss) pair, the dtype, the
number of samples (1-30) and a batch size from 1 to n_samples + 3, so that
a last partial batch and a batch larger than the data both come up.
"""

import numpy as np
from helpers import (
    assert_close,
    draw_architecture,
    flat,
    make_data,
    make_network,
    parameters_of,
    zero_velocities,
)
from hypothesis import assume, given
from hypothesis import strategies as st

from fastbp import Trainer, baseline


@st.composite
def problems(draw):
    sizes, hidden, output, loss_name, dtype, n_samples, batch_size = draw_architecture(
        draw, max_width=12, max_samples=30)
    seed = draw(st.integers(0, 2**32 - 1))
    return dict(sizes=sizes, hidden=hidden, output=output, loss_name=loss_name,
                dtype=dtype, n_samples=n_samples, batch_size=batch_size, seed=seed)


def build(problem):
    rng = np.random.default_rng(problem["seed"])
    net = make_network(problem["sizes"], problem["hidden"], problem["output"],
                       problem["dtype"], seed=problem["seed"] % 10_000)
    X, Y = make_data(rng, problem["n_samples"], problem["sizes"], problem["dtype"])
    return net, X, Y


def baseline_epoch(problem, weights, biases, X, Y, **options):
    """The oracle's epoch, or None where plain SGD itself blows up.

    An identity chain with a large step can diverge whatever the code; such
    draws say nothing about the kernels (and a near-divergent trajectory
    amplifies rounding differences without bound), so they are discarded.
    """
    with np.errstate(all="ignore"):
        loss = baseline.train_epoch(
            weights, biases, X, Y, activation=problem["hidden"], output=problem["output"],
            loss=problem["loss_name"], batch_size=problem["batch_size"],
            velocities=zero_velocities(weights, biases), **options)
    if not np.isfinite(loss) or not np.all(np.abs(flat(weights + biases)) < 1e2):
        return None
    return loss


@given(problem=problems(), learning_rate=st.sampled_from([0.05, 0.3]),
       l2=st.sampled_from([0.0, 0.01]), momentum=st.sampled_from([0.0, 0.5]))
def test_one_epoch_matches_baseline(problem, learning_rate, l2, momentum):
    net, X, Y = build(problem)
    weights, biases = parameters_of(net)
    expected = baseline_epoch(problem, weights, biases, X, Y, learning_rate=learning_rate,
                              l2=l2, momentum=momentum)
    assume(expected is not None)
    trainer = Trainer(net, loss=problem["loss_name"], learning_rate=learning_rate,
                      batch_size=problem["batch_size"], l2=l2, momentum=momentum,
                      shuffle=False)

    history = trainer.fit(X, Y, epochs=1)

    assert_close(history["loss"][0], expected, problem["dtype"], what="epoch loss")
    for array in [*net.weights, *net.biases]:
        assert array.dtype == np.dtype(problem["dtype"])
    # all parameters at once: relative to the largest of them
    assert_close(flat([*net.weights, *net.biases]), flat(weights + biases),
                 problem["dtype"], what="parameters after the epoch")


@given(problem=problems())
def test_forward_matches_baseline_and_respects_the_output_range(problem):
    net, X, _ = build(problem)
    weights, biases = parameters_of(net)

    outputs = net.forward(X)

    expected = baseline.forward(weights, biases, X, problem["hidden"], problem["output"])[-1]
    assert outputs.dtype == np.dtype(problem["dtype"])
    assert outputs.shape == (problem["n_samples"], problem["sizes"][-1])
    assert np.isfinite(outputs).all()
    assert_close(outputs, expected, problem["dtype"], what="A^L")
    if problem["output"] == "softmax":
        assert (outputs >= 0).all()
        assert_close(outputs.sum(axis=1), np.ones(problem["n_samples"]), problem["dtype"],
                     what="softmax row sums")
    if problem["output"] == "sigmoid":
        assert ((outputs >= 0) & (outputs <= 1)).all()


@given(problem=problems(), l2=st.sampled_from([0.0, 0.02]))
def test_loss_and_gradients_match_baseline(problem, l2):
    net, X, Y = build(problem)
    weights, biases = parameters_of(net)
    trainer = Trainer(net, loss=problem["loss_name"], l2=l2)

    J, grad_weights, grad_biases = trainer.loss_and_gradients(X, Y)

    J_expected, gw, gb = baseline.loss_and_gradients(
        weights, biases, X, Y, problem["hidden"], problem["output"], problem["loss_name"],
        l2=l2)
    assert np.isfinite(J)
    assert_close(J, J_expected, problem["dtype"], what="J")
    # every layer relative to the largest gradient entry: a layer behind a
    # saturated unit can have gradients ~1e-8 whose float32 rounding error is
    # set by the other layers' magnitudes, not its own
    scale = float(np.abs(flat(gw + gb)).max())
    for k in range(len(weights)):
        assert_close(grad_weights[k], gw[k], problem["dtype"], what=f"dJ/dW[{k}]",
                     scale=scale)
        assert_close(grad_biases[k], gb[k], problem["dtype"], what=f"dJ/db[{k}]",
                     scale=scale)
