"""Optimizers and the L1 penalty against their published update rules.

Each rule is written out again here, in a few lines of NumPy, together with
its own small backpropagation (sigmoid hidden layers, softmax output,
cross-entropy), so that the reference shares no code with fastbp: not the
kernels and not fastbp.baseline. The Trainer (the fused Cython update) and
baseline.train_epoch are then both checked against it for several epochs.
"""

import numpy as np
import pytest

from fastbp import Network, Trainer, baseline

from helpers import assert_close, make_network, optimizer_state

# --------------------------------------------------------------------------
# The independent reference
# --------------------------------------------------------------------------

SIZES = [4, 6, 5, 3]
N_SAMPLES, BATCH_SIZE, EPOCHS = 23, 5, 3      # batches of 5, 5, 5, 5, 3 per epoch


def reference_gradients(weights, biases, X, Y, l2, l1):
    """J and its gradients for sigmoid hidden layers, softmax + cross-entropy.

    J = (1/m) sum_i -sum_k y_ik log a_ik + (l2/2) sum ||W||^2 + l1 sum |W|
    """
    activations = [X]
    for k, (W, b) in enumerate(zip(weights, biases)):
        Z = activations[-1] @ W.T + b
        if k < len(weights) - 1:
            activations.append(1 / (1 + np.exp(-Z)))
        else:
            Z = Z - Z.max(axis=1, keepdims=True)
            log_a = Z - np.log(np.exp(Z).sum(axis=1, keepdims=True))
            activations.append(np.exp(log_a))
    m = X.shape[0]
    J = -np.sum(Y * log_a) / m
    J += sum(l2 / 2 * np.sum(W ** 2) + l1 * np.sum(np.abs(W)) for W in weights)
    grad_w, grad_b = [None] * len(weights), [None] * len(weights)
    delta = activations[-1] - Y                               # softmax + CE
    for k in reversed(range(len(weights))):
        grad_w[k] = delta.T @ activations[k] / m + l2 * weights[k] + l1 * np.sign(weights[k])
        grad_b[k] = delta.mean(axis=0)
        if k:
            a = activations[k]
            delta = (delta @ weights[k]) * a * (1 - a)
    return J, grad_w, grad_b


def reference_update(params, grads, is_weight, state, t, rule):
    """One update of every parameter by the published rule (in place).

    params, grads: lists of arrays; state: dict of lists of arrays; t: the
    update number, 1 for the first.
    """
    eta = rule["learning_rate"]
    name = rule.get("optimizer", "sgd")
    mu = rule.get("momentum", 0.0)
    decay = rule.get("weight_decay", 0.01 if name == "adamw" else 0.0)
    eps = rule.get("epsilon", 1e-8)
    for i, (p, g) in enumerate(zip(params, grads)):
        if name == "sgd" and mu == 0:
            step = -eta * g
        elif name == "sgd":
            # Sutskever et al.: v = mu v - eta g; Nesterov in the Bengio et al. form
            v = state.setdefault("v", [np.zeros_like(q) for q in params])
            v[i] = mu * v[i] - eta * g
            step = mu * v[i] - eta * g if rule.get("nesterov") else v[i]
        elif name == "rmsprop":
            # Tieleman and Hinton
            rho = rule.get("rho", 0.9)
            s = state.setdefault("s", [np.zeros_like(q) for q in params])
            s[i] = rho * s[i] + (1 - rho) * g ** 2
            step = -eta * g / (np.sqrt(s[i]) + eps)
        else:
            # Kingma and Ba, Algorithm 1; AdamW: Loshchilov and Hutter
            beta1, beta2 = rule.get("beta1", 0.9), rule.get("beta2", 0.999)
            m1 = state.setdefault("m", [np.zeros_like(q) for q in params])
            m2 = state.setdefault("u", [np.zeros_like(q) for q in params])
            m1[i] = beta1 * m1[i] + (1 - beta1) * g
            m2[i] = beta2 * m2[i] + (1 - beta2) * g ** 2
            m_hat = m1[i] / (1 - beta1 ** t)
            v_hat = m2[i] / (1 - beta2 ** t)
            step = -eta * m_hat / (np.sqrt(v_hat) + eps)
        if is_weight[i]:
            p *= 1 - eta * decay
        p += step


def reference_fit(weights, biases, X, Y, rule, epochs, state=None, t0=0,
                  batch_size=BATCH_SIZE):
    """Mini-batch training in sample order; returns (per-epoch mean J, state, t)."""
    state = {} if state is None else state
    l2, l1 = rule.get("l2", 0.0), rule.get("l1", 0.0)
    params = weights + biases
    is_weight = [True] * len(weights) + [False] * len(biases)
    t, losses = t0, []
    for _ in range(epochs):
        total = 0.0
        for start in range(0, len(X), batch_size):
            Xb, Yb = X[start:start + batch_size], Y[start:start + batch_size]
            J, grad_w, grad_b = reference_gradients(weights, biases, Xb, Yb, l2, l1)
            total += len(Xb) * J
            t += 1
            reference_update(params, grad_w + grad_b, is_weight, state, t, rule)
        losses.append(total / len(X))
    return losses, state, t


# --------------------------------------------------------------------------
# Problem set-up
# --------------------------------------------------------------------------

RULES = {
    "sgd": dict(learning_rate=0.5),
    "sgd-l2": dict(learning_rate=0.5, l2=0.01),
    "momentum": dict(learning_rate=0.1, momentum=0.9),
    "nesterov": dict(learning_rate=0.1, momentum=0.9, nesterov=True),
    "rmsprop": dict(learning_rate=0.01, optimizer="rmsprop", rho=0.8, epsilon=1e-6),
    "adam": dict(learning_rate=0.02, optimizer="adam"),
    "adam-betas": dict(learning_rate=0.02, optimizer="adam", beta1=0.8, beta2=0.99,
                       epsilon=1e-7, l2=0.01),
    "adamw": dict(learning_rate=0.02, optimizer="adamw"),
    "adamw-decay": dict(learning_rate=0.02, optimizer="adamw", weight_decay=0.3, l2=0.001),
    "sgd-l1": dict(learning_rate=0.5, l1=0.003),
    "nesterov-l1-l2": dict(learning_rate=0.1, momentum=0.5, nesterov=True, l1=0.002,
                           l2=0.01),
    "rmsprop-l1": dict(learning_rate=0.01, optimizer="rmsprop", l1=0.005),
    "adam-l1": dict(learning_rate=0.02, optimizer="adam", l1=0.005),
    "momentum-decay": dict(learning_rate=0.1, momentum=0.9, weight_decay=0.05),
}


def problem(dtype=np.float64, seed=0):
    """(network, X, labels, one-hot Y) of a small softmax classifier."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(N_SAMPLES, SIZES[0])).astype(dtype)
    labels = rng.integers(0, SIZES[-1], size=N_SAMPLES)
    Y = np.eye(SIZES[-1], dtype=dtype)[labels]
    net = make_network(SIZES, output="softmax", dtype=dtype, seed=seed)
    return net, X, labels, Y


def make_trainer(net, rule, **options):
    options = {"shuffle": False, "seed": 0, **options}
    return Trainer(net, loss="cross_entropy", batch_size=BATCH_SIZE, **rule, **options)


def copies(net):
    return [W.copy() for W in net.weights], [b.copy() for b in net.biases]


def assert_parameters(net, weights, biases, dtype=np.float64, rtol=1e-10):
    for k in range(net.n_layers):
        assert_close(net.weights[k], weights[k], dtype, rtol, what=f"weights[{k}]")
        assert_close(net.biases[k], biases[k], dtype, rtol, what=f"biases[{k}]")


# --------------------------------------------------------------------------
# The Trainer's fused updates and baseline.train_epoch against the reference
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", RULES)
def test_trainer_fit_matches_the_published_rule(name):
    rule = RULES[name]
    net, X, labels, Y = problem()
    weights, biases = copies(net)
    expected_losses, _, _ = reference_fit(weights, biases, X, Y, rule, EPOCHS)

    history = make_trainer(net, rule).fit(X, labels, epochs=EPOCHS)

    assert_parameters(net, weights, biases)
    # the parameters really moved: the test is not vacuous
    assert not np.allclose(net.weights[0], problem()[0].weights[0])
    np.testing.assert_allclose(history["loss"], expected_losses, rtol=1e-10)


@pytest.mark.parametrize("name", ["momentum", "nesterov", "rmsprop", "adam", "adamw-decay",
                                  "adam-l1"])
def test_trainer_step_matches_the_published_rule(name):
    rule = RULES[name]
    net, X, labels, Y = problem(seed=1)
    weights, biases = copies(net)
    trainer = make_trainer(net, rule)
    state, t = {}, 0
    for start in range(0, 20, 4):          # five single-batch steps
        batch = slice(start, start + 4)
        J = trainer.step(X[batch], labels[batch])
        (expected_J,), state, t = reference_fit(weights, biases, X[batch], Y[batch], rule, 1,
                                                state, t)
        assert J == pytest.approx(expected_J, rel=1e-10)
    assert t == 5
    assert_parameters(net, weights, biases)


@pytest.mark.parametrize("name", RULES)
def test_baseline_train_epoch_matches_the_published_rule(name):
    rule = RULES[name]
    net, X, _, Y = problem(seed=2)
    weights, biases = copies(net)
    expected_losses, _, _ = reference_fit(weights, biases, X, Y, rule, EPOCHS)

    trained_weights, trained_biases = copies(net)
    state = {}
    losses = [
        baseline.train_epoch(trained_weights, trained_biases, X, Y, output="softmax",
                             loss="cross_entropy", batch_size=BATCH_SIZE, state=state, **rule)
        for _ in range(EPOCHS)
    ]
    assert state["step"] == EPOCHS * 5
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-10)
    for k in range(net.n_layers):
        assert_close(trained_weights[k], weights[k], np.float64, 1e-10)
        assert_close(trained_biases[k], biases[k], np.float64, 1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["nesterov-l1-l2", "rmsprop-l1", "adam-betas", "adamw"])
def test_trainer_matches_baseline_with_other_layers_and_shuffling(dtype, name):
    # tanh/relu hidden layers, sigmoid output, mse; shuffled epochs whose
    # permutations are the trainer's own (read back from a twin generator)
    rule = RULES[name]
    sizes = [5, 7, 4]
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, size=(31, 5)).astype(dtype)
    Y = rng.uniform(0, 1, size=(31, 4)).astype(dtype)
    net = make_network(sizes, activation="tanh", output="sigmoid", dtype=dtype, seed=3)
    weights, biases = copies(net)
    trainer = Trainer(net, loss="mse", batch_size=8, shuffle=True, seed=11, **rule)
    history = trainer.fit(X, Y, epochs=EPOCHS)

    twin = np.random.default_rng(11)
    state = {}
    losses = [
        baseline.train_epoch(weights, biases, X, Y, activation="tanh", output="sigmoid",
                             loss="mse", batch_size=8, order=twin.permutation(31),
                             state=state, **rule)
        for _ in range(EPOCHS)
    ]
    rtol = 1e-10 if dtype == np.float64 else 2e-4
    np.testing.assert_allclose(history["loss"], losses, rtol=rtol)
    assert_parameters(net, weights, biases, dtype, rtol)


@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov-l1-l2", "rmsprop", "adam",
                                  "adamw-decay"])
def test_float32_training_stays_close_to_float64(name):
    rule = RULES[name]
    net64, X, labels, _ = problem()
    net32 = Network(SIZES, output="softmax", dtype="float32")
    net32.set_parameters(net64.get_parameters().astype(np.float32))
    history64 = make_trainer(net64, rule).fit(X, labels, epochs=EPOCHS)
    history32 = make_trainer(net32, rule).fit(X.astype(np.float32), labels, epochs=EPOCHS)
    assert net32.weights[0].dtype == np.float32
    np.testing.assert_allclose(history32["loss"], history64["loss"], rtol=1e-4)
    for k in range(net64.n_layers):
        assert_close(net32.weights[k], net64.weights[k], np.float32, 1e-4)
        assert_close(net32.biases[k], net64.biases[k], np.float32, 1e-4)


# --------------------------------------------------------------------------
# Invalid settings
# --------------------------------------------------------------------------

INVALID = [
    (dict(optimizer="adam", momentum=0.9), "momentum"),
    (dict(optimizer="rmsprop", momentum=0.5), "momentum"),
    (dict(nesterov=True), "nesterov"),
    (dict(optimizer="lion"), "optimizer"),
    (dict(l1=-0.1), "l1"),
    (dict(weight_decay=-0.01), "weight_decay"),
    (dict(optimizer="adam", beta1=1.0), "beta1"),
    (dict(optimizer="adam", beta2=1.5), "beta2"),
    (dict(optimizer="adam", epsilon=0.0), "epsilon"),
    (dict(optimizer="rmsprop", epsilon=-1e-8), "epsilon"),
    (dict(optimizer="rmsprop", rho=1.0), "rho"),
]
INVALID_IDS = [f"{match}-{i}" for i, (_, match) in enumerate(INVALID)]


@pytest.mark.parametrize("settings, match", INVALID, ids=INVALID_IDS)
def test_invalid_settings_are_rejected_by_the_constructor(settings, match):
    net = make_network(SIZES, output="softmax")
    with pytest.raises(ValueError, match=match):
        make_trainer(net, {"learning_rate": 0.1, **settings})


@pytest.mark.parametrize("settings, match", INVALID, ids=INVALID_IDS)
def test_invalid_settings_on_a_trained_trainer_change_nothing(settings, match):
    # Train, break the settings, see fit and step refuse; then repair them and
    # check that training continues exactly like a twin that never saw the
    # rejected calls: parameters, optimizer state, generator and epoch count
    # were all left as they were.
    rule = dict(learning_rate=0.02, optimizer="adam")
    net, X, labels, _ = problem()
    twin_net = net.copy()
    trainer = make_trainer(net, rule, shuffle=True)
    twin = make_trainer(twin_net, rule, shuffle=True)
    trainer.fit(X, labels, epochs=2)
    twin.fit(X, labels, epochs=2)
    before = net.get_parameters()

    original = {key: getattr(trainer, key) for key in settings}
    for key, value in settings.items():
        setattr(trainer, key, value)
    with pytest.raises(ValueError, match=match):
        trainer.fit(X, labels, epochs=1)
    with pytest.raises(ValueError, match=match):
        trainer.partial_fit(X, labels)
    with pytest.raises(ValueError, match=match):
        trainer.step(X[:5], labels[:5])
    np.testing.assert_array_equal(net.get_parameters(), before)
    assert trainer.epoch == 2 and len(trainer.history["loss"]) == 2

    for key, value in original.items():
        setattr(trainer, key, value)
    trainer.fit(X, labels, epochs=2)
    twin.fit(X, labels, epochs=2)
    np.testing.assert_array_equal(net.get_parameters(), twin_net.get_parameters())
    assert trainer.history == {**twin.history, "epoch_seconds": trainer.history["epoch_seconds"]}


@pytest.mark.parametrize("settings, match", INVALID, ids=INVALID_IDS)
def test_invalid_settings_are_rejected_by_baseline_before_any_change(settings, match):
    net, X, _, Y = problem()
    weights, biases = copies(net)
    state = {}
    baseline.train_epoch(weights, biases, X, Y, output="softmax", loss="cross_entropy",
                         learning_rate=0.02, optimizer="adam", batch_size=BATCH_SIZE,
                         state=state)
    saved_parameters = [a.copy() for a in weights + biases]
    saved_state = {key: [a.copy() for a in value] if isinstance(value, list) else value
                   for key, value in state.items()}
    with pytest.raises(ValueError, match=match):
        baseline.train_epoch(weights, biases, X, Y, output="softmax", loss="cross_entropy",
                             **{"learning_rate": 0.02, "batch_size": BATCH_SIZE, **settings},
                             state=state)
    for got, expected in zip(weights + biases, saved_parameters):
        np.testing.assert_array_equal(got, expected)
    assert state.keys() == saved_state.keys() and state["step"] == saved_state["step"]
    for key in ("first_moment", "second_moment"):
        for got, expected in zip(state[key], saved_state[key]):
            np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------
# State across fit calls
# --------------------------------------------------------------------------


def test_switching_optimizer_starts_its_state_afresh():
    net, X, labels, Y = problem()
    trainer = make_trainer(net, RULES["adam"])
    trainer.fit(X, labels, epochs=2)

    # rmsprop from here: a fresh squared-gradient average
    weights, biases = copies(net)
    reference_fit(weights, biases, X, Y, RULES["rmsprop"], 2)
    trainer.optimizer, trainer.learning_rate = "rmsprop", 0.01
    trainer.rho, trainer.epsilon = 0.8, 1e-6
    trainer.fit(X, labels, epochs=2)
    assert_parameters(net, weights, biases)

    # and back to adam: fresh moments and bias correction from t = 1 again
    reference_fit(weights, biases, X, Y, RULES["adam"], 2)
    trainer.optimizer, trainer.learning_rate = "adam", 0.02
    trainer.epsilon = 1e-8
    trainer.fit(X, labels, epochs=2)
    assert_parameters(net, weights, biases)

    # sgd with momentum after adam: a zero velocity
    reference_fit(weights, biases, X, Y, RULES["momentum"], 1)
    trainer.optimizer, trainer.learning_rate, trainer.momentum = "sgd", 0.1, 0.9
    trainer.fit(X, labels, epochs=1)
    assert_parameters(net, weights, biases)


def test_baseline_state_is_kept_across_epochs_and_reset_by_another_optimizer():
    net, X, _, Y = problem()
    weights, biases = copies(net)
    expected_w, expected_b = copies(net)
    options = dict(output="softmax", loss="cross_entropy", batch_size=BATCH_SIZE)
    state = {}
    baseline.train_epoch(weights, biases, X, Y, state=state, **options, **RULES["adam"])
    assert state["optimizer"] == "adam" and state["step"] == 5
    baseline.train_epoch(weights, biases, X, Y, state=state, **options, **RULES["rmsprop"])
    assert state["optimizer"] == "rmsprop" and state["step"] == 5
    assert set(state) == {"optimizer", "step", "square_average"}
    reference_fit(expected_w, expected_b, X, Y, RULES["adam"], 1)
    reference_fit(expected_w, expected_b, X, Y, RULES["rmsprop"], 1)
    for got, expected in zip(weights + biases, expected_w + expected_b):
        assert_close(got, expected, np.float64, 1e-10)


def test_two_adam_fits_equal_one_fit_bit_for_bit():
    rule = dict(learning_rate=0.02, optimizer="adam", l1=0.001)
    net_a, X, labels, _ = problem()
    net_b = net_a.copy()
    one = make_trainer(net_a, rule, shuffle=True, seed=5)
    two = make_trainer(net_b, rule, shuffle=True, seed=5)
    history = one.fit(X, labels, epochs=5)
    first = two.fit(X, labels, epochs=2)
    second = two.fit(X, labels, epochs=3)
    np.testing.assert_array_equal(net_a.get_parameters(), net_b.get_parameters())
    assert first["loss"] + second["loss"] == history["loss"]
    assert two.epoch == 5 and two.history["loss"] == history["loss"]


@pytest.mark.parametrize("optimizer", ["adam", "rmsprop"])
def test_adaptive_moments_skip_the_subnormal_range_and_the_caller_keeps_its_float_mode(
        optimizer):
    # Feature 0 is non-zero in the first sample only: afterwards the gradient
    # of every weight it feeds is exactly 0, and those moments decay by beta1
    # (Adam's m) or rho (RMSprop's s) each step. In float32 that takes them
    # through the subnormal range (below 1.2e-38) from about step 750 (both
    # are near 1e-40 after 800 steps without the flush), where arithmetic is
    # many times slower; the update pass flushes them to 0 instead.
    rho = 0.9                                        # RMSprop's s then decays like m
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(800, 4)).astype(np.float32)
    X[1:, 0] = 0
    labels = rng.integers(0, 3, size=800)
    net = make_network([4, 3, 3], output="softmax", dtype=np.float32, seed=1)
    trainer = Trainer(net, loss="cross_entropy", optimizer=optimizer, learning_rate=0.01,
                      batch_size=1, shuffle=False, seed=0,
                      **({"rho": rho} if optimizer == "rmsprop" else {}))
    trainer.fit(X, labels, epochs=1)
    state1, state2 = optimizer_state(trainer)
    decayed = state1[:12].reshape(3, 4)[:, 0]     # W^1[:, 0] in the flat layout
    np.testing.assert_array_equal(decayed, 0)
    tiny = np.finfo(np.float32).tiny
    for state in (state1, state2):
        assert not np.any((state != 0) & (np.abs(state) < tiny))
    # the thread's own floating-point mode is restored: subnormals still exist here
    assert np.float32(1e-38) * np.float32(0.01) != 0


# --------------------------------------------------------------------------
# Digits: epochs to 95 % validation accuracy
# --------------------------------------------------------------------------

# Each optimizer at each rate of a short grid around its usual range. Plain
# SGD already does well on this small problem, so the difference is an epoch
# or so, at the best rate of each grid (and it depends on the seed).
DIGITS_GRIDS = {
    "sgd": (dict(), (0.25, 0.5, 1.0, 2.0, 3.0)),
    "momentum 0.9": (dict(momentum=0.9), (0.02, 0.05, 0.1, 0.2)),
    "adam": (dict(optimizer="adam"), (0.002, 0.005, 0.01, 0.02)),
}
TARGET, MAX_EPOCHS = 0.95, 40


def epochs_to_target(data, learning_rate, settings):
    X_train, X_val, y_train, y_val = data
    net = Network([64, 30, 10], activation="sigmoid", seed=0)
    trainer = Trainer(net, loss="cross_entropy", learning_rate=learning_rate, batch_size=10,
                      seed=0, **settings)
    history = trainer.fit(X_train, y_train, epochs=MAX_EPOCHS, validation_data=(X_val, y_val),
                          callbacks=[_StopAt(TARGET)])
    reached = np.flatnonzero(np.asarray(history["val_accuracy"]) >= TARGET)
    return int(reached[0]) + 1 if reached.size else None


class _StopAt:
    def __init__(self, target):
        self.target = target

    def on_epoch_end(self, trainer, epoch, history):
        return history["val_accuracy"][-1] >= self.target


def test_adam_and_momentum_reach_95_percent_on_digits_in_fewer_epochs_than_sgd():
    from sklearn import datasets, model_selection

    digits = datasets.load_digits()
    data = model_selection.train_test_split(digits.data / 16.0, digits.target,
                                            test_size=0.25, stratify=digits.target,
                                            random_state=0)
    best = {}
    print(f"\nepochs to {TARGET:.0%} validation accuracy on digits, [64, 30, 10] sigmoid, "
          f"cross_entropy, batch 10, seed 0:")
    for name, (settings, rates) in DIGITS_GRIDS.items():
        epochs = {rate: epochs_to_target(data, rate, settings) for rate in rates}
        print(f"  {name:<13}" + "  ".join(f"lr {rate:g}: {n}" for rate, n in epochs.items()))
        best[name] = min(n for n in epochs.values() if n is not None)
    print("  best: " + ", ".join(f"{name} {n}" for name, n in best.items()))
    assert best["adam"] < best["sgd"]
    assert best["momentum 0.9"] < best["sgd"]
