"""What the scikit-learn estimators ask of the kernels beyond the Trainer's needs.

Adam's epsilon-hat form (scikit-learn's AdamOptimizer is the reference), the
loss split by row counts that its loss_ sums, and a full-batch objective taken
in row blocks within one call (its lbfgs solver's function evaluations).
"""

import numpy as np
import pytest

from fastbp import Trainer
from fastbp import _kernels
from test_poisson import counts_problem

def _rule(**settings):
    rule = {"kind": _kernels.ADAM, "learning_rate": 0.01, "l2": 0.0, "l1": 0.0,
            "weight_decay": 0.0, "momentum": 0.0, "nesterov": False, "rho": 0.9,
            "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-3, "bias_corrected_epsilon": True}
    rule.update(settings)
    return rule


def _epoch_arguments(net, X, Y):
    params = net._params
    Y = np.ascontiguousarray(Y)
    return dict(params=params, grads=np.empty_like(params), moment1=np.zeros_like(params),
                moment2=np.zeros_like(params), sizes=net._sizes, activations=net._codes,
                loss=_kernels.POISSON, X=X, Y=Y, order=np.empty(0, dtype=np.intp),
                batch_size=len(X), work=np.empty(_kernels.workspace_size(net._sizes, len(X))))


@pytest.mark.parametrize("steps", [1, 3])
def test_epsilon_hat_adam_is_scikit_learns_update(steps):
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer
    net, X, Y = counts_problem()
    reference = net.copy()
    arguments = _epoch_arguments(net, X, Y)
    # epsilon large enough that where it sits changes the step
    optimizer = AdamOptimizer([reference._params], learning_rate_init=0.01, epsilon=1e-3)
    trainer = Trainer(reference, loss="poisson")
    for step in range(steps):
        _kernels.train_epoch(**arguments, progress=np.zeros(3),
                             rule=_rule(bias_corrected_epsilon=False), step=step)
        _, grad_w, grad_b = trainer.loss_and_gradients(X, Y)
        gradient = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in
                                   zip(grad_w, grad_b)])
        optimizer.update_params([reference._params], [gradient])
    np.testing.assert_allclose(net._params, reference._params, rtol=1e-12, atol=1e-15)

    # the default form differs with this epsilon
    other, _, _ = counts_problem()
    _kernels.train_epoch(**_epoch_arguments(other, X, Y), progress=np.zeros(3), rule=_rule())
    if steps == 1:
        assert not np.allclose(other._params, net._params, rtol=1e-9, atol=0)


def test_progress_splits_the_loss_by_row_counts():
    net, X, Y = counts_problem(n_samples=11)
    arguments = _epoch_arguments(net, X, Y)
    arguments["batch_size"] = 4
    weights = np.linspace(0.5, 2.0, len(X))
    rule = _rule(kind=_kernels.SGD, l2=0.3, learning_rate=0.0)
    reference = Trainer(net.copy(), loss="poisson", l2=0.3, l2_per_sample=True)
    progress = np.zeros(5)
    total, _ = _kernels.train_epoch(**arguments, progress=progress, rule=rule,
                                    sample_weight=weights, l2_per_sample=True)
    data = penalty = weighted = 0.0
    for start in range(0, len(X), 4):
        rows = slice(start, start + 4)
        m, w = len(X[rows]), weights[rows]
        J = reference.evaluate(X[rows], Y[rows], w)["loss"]
        P = reference._penalty(w.sum())
        data += m * (J - P)
        penalty += m * P
        weighted += w.sum() * J
    assert progress[3] == pytest.approx(data, rel=1e-12)
    assert progress[4] == pytest.approx(penalty, rel=1e-12)
    assert total == pytest.approx(weighted, rel=1e-12)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("capacity", [1, 4, 12])
def test_row_blocks_give_the_full_batch_objective(capacity, dtype, weighted):
    net, X, Y = counts_problem(dtype, n_samples=13)
    weights = np.linspace(0.1, 2.0, len(X)).astype(dtype) if weighted else None
    arguments = (net._params, net._sizes, net._codes, _kernels.POISSON, X, Y)
    whole = np.empty_like(net._params)
    J, correct = _kernels.loss_and_gradients(
        net._params, whole, *arguments[1:],
        np.empty(_kernels.workspace_size(net._sizes, len(X)), dtype=dtype), 0.4, 0.01,
        sample_weight=weights, l2_per_sample=True)
    blocked = np.full_like(net._params, np.nan)     # every entry must be written
    J_blocks, correct_blocks = _kernels.loss_and_gradients(
        net._params, blocked, *arguments[1:],
        np.empty(_kernels.workspace_size(net._sizes, capacity), dtype=dtype), 0.4, 0.01,
        sample_weight=weights, l2_per_sample=True, capacity=capacity)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert J_blocks == pytest.approx(J, rel=rtol)
    assert correct_blocks == pytest.approx(correct, rel=rtol)
    np.testing.assert_allclose(blocked, whole, rtol=rtol, atol=rtol * 1e-2)


def test_row_blocks_need_room_for_a_block():
    net, X, Y = counts_problem(n_samples=13)
    with pytest.raises(ValueError, match="work is too small"):
        _kernels.loss_and_gradients(net._params, np.empty_like(net._params), net._sizes,
                                    net._codes, _kernels.POISSON, X, Y,
                                    np.empty(_kernels.workspace_size(net._sizes, 3)), 0.0,
                                    capacity=4)
    with pytest.raises(ValueError, match="capacity"):
        _kernels.loss_and_gradients(net._params, np.empty_like(net._params), net._sizes,
                                    net._codes, _kernels.POISSON, X, Y,
                                    np.empty(_kernels.workspace_size(net._sizes, 13)), 0.0,
                                    capacity=-1)
