"""Memory safety and hostile values: every public entry point, random everything,
and the raw kernels' own argument checks.

(Arguments refused at the public boundary are in test_arguments.py.)

The kernels run with bounds checks off, so the Python layer must hand them
only arrays of the right dtype, shape and layout. hypothesis draws the
architecture, dtype, batch size, the memory layout of X and Y (Fortran
order, strided and negatively strided views, read-only, big-endian, another
dtype, nested lists) and the magnitude of the values (moderate, 1e300,
subnormal, weights giving |z| ~ 1e6), and pushes them through `forward`,
`predict`, `fit`, `step`, `loss_and_gradients` and `evaluate`. Checked:

- no crash, and the caller's arrays are never written;
- every layout gives bit for bit the result of the C-contiguous array;
- no NaN or infinity where the maths has none: sigmoid and softmax outputs
  stay in [0, 1], losses with bounded outputs stay finite, parameters are
  never left non-finite (a step that overflows raises DivergenceError and
  restores them);
- with moderate values, equality with the NumPy oracle fastbp.baseline;
- the internal kernels refuse wrong buffer sizes, shapes and dtypes with
  ValueError instead of reading or writing out of bounds.

Run under the AddressSanitizer build (tools/sanitize.sh), an out-of-bounds
access on any of these paths is a hard failure even where it would go
unnoticed here.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import (
    assert_close,
    copy_parameters,
    draw_architecture,
    epoch_kernel,
    flat,
    parameters_of,
    zero_velocities,
)
from hypothesis import assume, given, note
from hypothesis import strategies as st

from fastbp import (
    DivergenceError,
    LambdaCallback,
    Network,
    Trainer,
    _kernels,
    baseline,
)

LAYOUTS = ["C", "F", "strided", "reversed", "readonly", "big-endian", "other-dtype", "list"]
SCALES = ["moderate", "huge-inputs", "subnormal", "huge-z"]


def in_layout(array, layout):
    """`array` (C order) with the same values in another memory layout or type."""
    if layout == "C":
        return array
    if layout == "F":
        return np.asfortranarray(array)
    if layout == "strided":
        big = np.zeros((2 * array.shape[0], 3 * array.shape[1]), dtype=array.dtype)
        big[::2, ::3] = array
        return big[::2, ::3]
    if layout == "reversed":
        return np.ascontiguousarray(array[::-1, ::-1])[::-1, ::-1]
    if layout == "readonly":
        copy = array.copy()
        copy.setflags(write=False)
        return copy
    if layout == "big-endian":
        return array.astype(array.dtype.newbyteorder(">"))
    if layout == "other-dtype":
        # values are float32-representable, so either way the cast is exact
        return array.astype(np.float32 if array.dtype == np.float64 else np.float64)
    if layout == "list":
        return array.tolist()
    raise AssertionError(layout)


@st.composite
def cases(draw):
    sizes, hidden, output, loss, dtype, n_samples, batch_size = draw_architecture(
        draw, max_width=9, max_samples=20)
    scale = draw(st.sampled_from(SCALES))
    if scale in ("huge-inputs", "subnormal"):
        # 1e300 does not fit float32 (refused; see the test below); float32
        # subnormals are ~1e-40
        assume(dtype == np.float64 or scale == "subnormal")
    labels = draw(st.booleans()) and sizes[-1] > 1
    x_layout = draw(st.sampled_from(LAYOUTS))
    # float32 holds neither 1e300 nor float64's subnormals: that cast is not exact
    assume(not (x_layout == "other-dtype" and dtype == np.float64
                and scale in ("huge-inputs", "subnormal")))
    return dict(sizes=sizes, hidden=hidden, output=output, loss=loss, dtype=dtype,
                n_samples=n_samples, batch_size=batch_size, scale=scale, labels=labels,
                x_layout=x_layout,
                y_layout=draw(st.sampled_from(LAYOUTS)),
                optimizer=draw(st.sampled_from(["sgd", "momentum", "rmsprop", "adam"])),
                seed=draw(st.integers(0, 2**31 - 1)))


def build(case):
    """(network, X, Y) of the case: X, Y C-contiguous in the network's dtype."""
    rng = np.random.default_rng(case["seed"])
    dtype = case["dtype"]
    net = Network(case["sizes"], activation=case["hidden"], output=case["output"],
                  dtype=np.dtype(dtype).name, seed=case["seed"] % 10_000)
    for bias in net.biases:
        bias[...] = 0.3 * rng.standard_normal(bias.shape)
    # float32-representable values, so every "other-dtype" cast is exact
    X = rng.uniform(-1, 1, (case["n_samples"], case["sizes"][0])).astype(np.float32)
    X = X.astype(dtype)
    if case["scale"] == "huge-inputs":
        X *= 1e300
    elif case["scale"] == "subnormal":
        X *= 1e-310 if dtype == np.float64 else 1e-40
        assert np.all(np.abs(X) < np.finfo(dtype).tiny)
    elif case["scale"] == "huge-z":
        # |z| ~ 1e6 in every layer: saturated sigmoid/tanh, one-hot softmax
        for weight in net.weights:
            weight[...] *= 1e6 / max(1.0, np.abs(weight).sum(axis=1).max())
    if case["labels"]:
        Y = rng.integers(0, case["sizes"][-1], case["n_samples"])
    else:
        Y = rng.uniform(0.05, 1.0, (case["n_samples"], case["sizes"][-1])).astype(np.float32)
        Y = (Y / Y.sum(axis=1, keepdims=True)).astype(np.float32).astype(dtype)
    return net, X, Y


def make_trainer(net, case, learning_rate=0.1):
    options = {"sgd": {}, "momentum": dict(momentum=0.5),
               "rmsprop": dict(optimizer="rmsprop"), "adam": dict(optimizer="adam")}
    return Trainer(net, loss=case["loss"], learning_rate=learning_rate,
                   batch_size=case["batch_size"], shuffle=True, seed=case["seed"] % 1000,
                   **options[case["optimizer"]])


def y_in_layout(Y, layout):
    if Y.ndim == 1:   # class labels: layouts of a 1-D array
        return {"F": Y, "strided": np.repeat(Y, 2)[::2], "reversed": Y[::-1].copy()[::-1],
                "other-dtype": Y.astype(np.int32), "list": Y.tolist(),
                "big-endian": Y.astype(">i8")}.get(layout, Y)
    return in_layout(Y, layout)


def run_everything(net, case, X, Y):
    """Every public entry point on (X, Y), in order; a dict of what came out."""
    trainer = make_trainer(net, case)
    out = {"forward": net.forward(X), "predict": net.predict(X)}
    out["loss_and_gradients"] = trainer.loss_and_gradients(X, Y)
    out["evaluate"] = trainer.evaluate(X, Y)
    finished = []     # parameters after each finished epoch (or step)

    def keep(trainer_, epoch, history):
        finished.append(net.get_parameters())

    for name, call in (
            ("step", lambda: trainer.step(X, Y)),
            ("fit", lambda: trainer.fit(X, Y, epochs=2,
                                        callbacks=[LambdaCallback(on_epoch_end=keep)])["loss"])):
        finished.append(net.get_parameters())
        try:
            out[name] = call()
        except DivergenceError:
            # Only where the maths itself overflows; the parameters are those
            # from before the failing epoch or step.
            np.testing.assert_array_equal(net.get_parameters(), finished[-1])
            out[name] = "diverged"
        assert np.isfinite(net.get_parameters()).all(), name
    out["parameters"] = net.get_parameters()
    out["forward after"] = net.forward(X)
    return out


def same(a, b):
    """Bit-identical results (NaN equal to NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


@given(case=cases())
def test_every_entry_point_survives_any_layout_and_magnitude(case):
    net, X, Y = build(case)
    note(f"X range [{X.min():.3g}, {X.max():.3g}]")
    X_in, Y_in = in_layout(X, case["x_layout"]), y_in_layout(Y, case["y_layout"])
    X_copy, Y_copy = np.array(X_in), np.array(Y_in)

    reference = run_everything(net.copy(), case, X, Y)
    result = run_everything(net, case, X_in, Y_in)

    # the caller's arrays were not written
    np.testing.assert_array_equal(np.asarray(X_in), X_copy)
    np.testing.assert_array_equal(np.asarray(Y_in), Y_copy)
    # a layout is only a layout
    for key in reference:
        assert same(result[key], reference[key]), key

    # no NaN or infinity where the maths has none
    bounded = case["output"] != "identity"
    # With 1e300 inputs (or gains of 1e6 per layer) one update can take the
    # weights to ~1e299 (or a product of them past the float range); the
    # next forward pass then overflows z itself, as exact arithmetic rounded
    # to the dtype would. Only the first pass has a representable z there.
    moderate = case["scale"] in ("moderate", "subnormal")
    passes = ["forward", "forward after"] if moderate else ["forward"]
    for key in passes:
        A = result[key]
        assert A.shape == (case["n_samples"], case["sizes"][-1]) and A.dtype == case["dtype"]
        if bounded:
            assert np.all((A >= 0) & (A <= 1)), key
        if case["scale"] != "huge-inputs" or bounded:
            assert np.isfinite(A).all(), key
        if case["output"] == "softmax":
            np.testing.assert_allclose(A.sum(axis=1), 1, rtol=1e-4 if case["dtype"] == np.float32
                                       else 1e-12)
    loss, grad_w, grad_b = result["loss_and_gradients"]
    if bounded:
        assert np.isfinite(loss) and np.isfinite(result["evaluate"]["loss"])
        assert np.isfinite(flat(grad_w + grad_b)).all()
    if moderate:
        assert np.isfinite(loss) and result["fit"] != "diverged"


def oracle_case(case, X, Y, net):
    """The oracle's loss, gradients, one-step and one-epoch SGD parameters."""
    weights, biases = parameters_of(net)
    if Y.ndim == 1:
        one_hot = np.zeros((Y.size, case["sizes"][-1]), dtype=case["dtype"])
        one_hot[np.arange(Y.size), Y] = 1
        Y = one_hot
    options = dict(activation=case["hidden"], output=case["output"], loss=case["loss"])
    with np.errstate(all="ignore"):
        forward = baseline.forward(weights, biases, X, case["hidden"], case["output"])[-1]
        loss, grad_w, grad_b = baseline.loss_and_gradients(weights, biases, X, Y, **options)
        stepped_w, stepped_b = copy_parameters(weights, biases)
        baseline.train_epoch(stepped_w, stepped_b, X, Y, learning_rate=0.1,
                             batch_size=X.shape[0], **options)
        epoch_w, epoch_b = copy_parameters(weights, biases)
        epoch_loss = baseline.train_epoch(
            epoch_w, epoch_b, X, Y, learning_rate=0.1, batch_size=case["batch_size"],
            velocities=zero_velocities(weights, biases), **options)
    return dict(forward=forward, loss=loss, grads=flat(grad_w + grad_b),
                step=as_parameters(stepped_w, stepped_b),
                epoch=as_parameters(epoch_w, epoch_b), epoch_loss=epoch_loss)


def as_parameters(weights, biases):
    """The flat layout of Network.get_parameters: [W^1, b^1, W^2, b^2, ...]."""
    return flat([array for pair in zip(weights, biases, strict=True) for array in pair])


@given(case=cases().filter(lambda case: case["scale"] in ("moderate", "subnormal")))
def test_moderate_values_in_any_layout_match_the_baseline(case):
    net, X, Y = build(case)
    expected = oracle_case(case, X, Y, net)
    # near-divergent trajectories amplify rounding without bound: skip them
    assume(np.isfinite(expected["epoch_loss"]) and np.all(np.abs(expected["epoch"]) < 1e2))
    X_in, Y_in = in_layout(X, case["x_layout"]), y_in_layout(Y, case["y_layout"])
    dtype = case["dtype"]

    assert_close(net.forward(X_in), expected["forward"], dtype, what="forward")
    trainer = Trainer(net.copy(), loss=case["loss"], learning_rate=0.1)
    loss, grad_w, grad_b = trainer.loss_and_gradients(X_in, Y_in)
    assert_close(loss, expected["loss"], dtype, what="loss")
    assert_close(flat(grad_w + grad_b), expected["grads"], dtype, what="gradients")
    assert_close(trainer.evaluate(X_in, Y_in)["loss"], expected["loss"], dtype, what="evaluate")
    trainer.step(X_in, Y_in)
    assert_close(trainer.network.get_parameters(), expected["step"], dtype, what="step")
    trainer = Trainer(net, loss=case["loss"], learning_rate=0.1,
                      batch_size=case["batch_size"], shuffle=False)
    history = trainer.fit(X_in, Y_in, epochs=1)
    assert_close(history["loss"][0], expected["epoch_loss"], dtype, what="epoch loss")
    assert_close(net.get_parameters(), expected["epoch"], dtype, what="epoch")


HUGE_BATCH_CHILD = """
import json
import numpy as np
from fastbp import Network, Trainer

rng = np.random.default_rng(0)
X, y = rng.random((10, 3)), rng.integers(0, 2, 10)
results = {}
for batch_size in [10, 2**31, 2**40, 2**61, 2**62, 2**63 - 1]:
    net = Network([3, 4, 2], seed=0)
    trainer = Trainer(net, learning_rate=0.1, batch_size=batch_size, shuffle=False)
    try:
        history = trainer.fit(X, y, epochs=2)
        results[batch_size] = [history["loss"], net.get_parameters().tolist()]
    except Exception as exc:
        results[batch_size] = f"{type(exc).__name__}: {exc}"
print(json.dumps(results))
"""


def test_a_batch_size_beyond_the_data_is_one_batch_however_large(tmp_path):
    # A batch larger than the data set is one batch of all of it: the
    # workspace must be sized for the rows there are, and its size never
    # computed with an overflowing product (batch_size * widths). Run in a
    # child process: an out-of-bounds write would corrupt this one.
    done = subprocess.run([sys.executable, "-c", HUGE_BATCH_CHILD], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-2000:]}"
    results = json.loads(done.stdout)
    expected = results.pop("10")
    for batch_size, outcome in results.items():
        if isinstance(outcome, str):
            # refusing it is acceptable too, if it says why
            assert outcome.startswith("ValueError") and "batch_size" in outcome, (
                batch_size, outcome)
        else:
            assert outcome == expected, batch_size


# ------------------------------------------------------------ the kernels' own checks


def kernel_arguments(dtype=np.float64, n_samples=7, batch_size=3, sizes=(4, 5, 3)):
    sizes = np.asarray(sizes, dtype=np.intp)
    n_params = _kernels.parameter_count(sizes)
    return dict(
        params=np.zeros(n_params, dtype), grads=np.zeros(n_params, dtype),
        moment1=np.zeros(n_params, dtype), moment2=np.zeros(n_params, dtype), sizes=sizes,
        activations=np.ones(sizes.size - 1, dtype=np.intc), loss=0,
        X=np.zeros((n_samples, sizes[0]), dtype), Y=np.zeros((n_samples, sizes[-1]), dtype),
        order=np.arange(n_samples, dtype=np.intp), batch_size=batch_size,
        work=np.zeros(_kernels.workspace_size(sizes, batch_size), dtype),
        progress=np.zeros(3),
    )


def _defects():
    n = _kernels.parameter_count(np.array([4, 5, 3], dtype=np.intp))
    small_work = _kernels.workspace_size(np.array([4, 5, 3], dtype=np.intp), 3) - 1
    return {
        "work too small": (dict(work=np.zeros(small_work)), {}),
        "work for a smaller batch": (
            dict(work=np.zeros(_kernels.workspace_size(np.array([4, 5, 3], np.intp), 2))), {}),
        "X too narrow": (dict(X=np.zeros((7, 3))), {}),
        "X too wide": (dict(X=np.zeros((7, 5))), {}),
        "Y too narrow": (dict(Y=np.zeros((7, 2))), {}),
        "Y rows differ": (dict(Y=np.zeros((6, 3))), {}),
        "order too short": (dict(order=np.arange(6, dtype=np.intp)), {}),
        "order too long": (dict(order=np.arange(8, dtype=np.intp)), {}),
        "params too short": (dict(params=np.zeros(n - 1)), {}),
        "params too long": (dict(params=np.zeros(n + 1)), {}),
        "one size": (dict(sizes=np.array([4], dtype=np.intp)), {}),
        "negative size": (dict(sizes=np.array([4, -5, 3], dtype=np.intp)), {}),
        "activations too few": (dict(activations=np.ones(1, dtype=np.intc)), {}),
        "batch size 0": (dict(batch_size=0), {}),
        "batch size negative": (dict(batch_size=-3), {}),
        "progress too short": (dict(progress=np.zeros(2)), {}),
        "grads missing (rmsprop)": (dict(grads=np.zeros(0)), dict(optimizer=1)),
        "grads too short (nesterov)": (dict(grads=np.zeros(n - 1)),
                                       dict(momentum=0.9, nesterov=True)),
        "moment1 missing (momentum)": (dict(moment1=np.zeros(0)), dict(momentum=0.9)),
        "moment2 too short (rmsprop)": (dict(moment2=np.zeros(n - 1)), dict(optimizer=1)),
        "moment1 too short (adam)": (dict(moment1=np.zeros(n - 1)), dict(optimizer=2)),
        "moment2 too short (adam)": (dict(moment2=np.zeros(n - 1)), dict(optimizer=2)),
        "unknown optimizer": ({}, dict(optimizer=7)),
        "X float32": (dict(X=np.zeros((7, 4), np.float32)), {}),
        "X Fortran": (dict(X=np.asfortranarray(np.zeros((7, 4)))), {}),
        "X 1-D": (dict(X=np.zeros(28)), {}),
        "X strided": (dict(X=np.zeros((7, 8))[:, ::2]), {}),
        "sizes int32": (dict(sizes=np.array([4, 5, 3], dtype=np.int32)), {}),
        "order int32": (dict(order=np.arange(7, dtype=np.int32)), {}),
        "params read-only": (dict(params=np.zeros(n)), "readonly"),
    }


DEFECTS = _defects()


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_train_epoch_refuses_wrong_arguments(defect):
    changes, options = DEFECTS[defect]
    arguments = kernel_arguments()
    arguments.update(changes)
    if options == "readonly":
        arguments["params"].setflags(write=False)
        options = {}
    snapshot = {k: np.array(v, copy=True) for k, v in arguments.items()
                if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError):
        epoch_kernel(arguments, **options)
    for key, value in snapshot.items():
        np.testing.assert_array_equal(arguments[key], value, err_msg=key)


def test_the_kernel_arguments_of_these_tests_are_valid():
    # the baseline of the defects above: unchanged, they are accepted
    for options in ({}, dict(optimizer=1), dict(optimizer=2), dict(momentum=0.9),
                    dict(momentum=0.9, nesterov=True)):
        total, _ = epoch_kernel(kernel_arguments(), **options)
        assert np.isfinite(total)


def test_forward_and_loss_and_gradients_kernels_refuse_wrong_arguments():
    a = kernel_arguments()
    params, sizes, codes, X, Y = a["params"], a["sizes"], a["activations"], a["X"], a["Y"]
    out = np.zeros((7, 3))
    work4 = np.zeros(_kernels.workspace_size(sizes, 4))
    no_targets = np.zeros((0, 3))
    assert _kernels.forward(params, sizes, codes, 0, X, no_targets, out, work4, 4)[0] == 0
    assert np.all(out == 0.5)       # zero parameters: sigmoid(0) everywhere
    out[...] = 0
    forward_defects = {
        "work too small": (params, sizes, codes, 0, X, no_targets, out, work4[:-1], 4),
        "capacity beyond work": (params, sizes, codes, 0, X, no_targets, out, work4, 5),
        "capacity 0": (params, sizes, codes, 0, X, no_targets, out, work4, 0),
        "out too short": (params, sizes, codes, 0, X, no_targets, out[:6], work4, 4),
        "out too narrow": (params, sizes, codes, 0, X, no_targets, np.zeros((7, 2)), work4, 4),
        "X too narrow": (params, sizes, codes, 0, X[:, :3].copy(), no_targets, out, work4, 4),
        "Y rows differ": (params, sizes, codes, 0, X, Y[:5], out, work4, 4),
        "params too short": (params[:-1], sizes, codes, 0, X, no_targets, out, work4, 4),
        "out float32": (params, sizes, codes, 0, X, no_targets, out.astype(np.float32),
                        work4, 4),
    }
    for defect, arguments in forward_defects.items():
        _assert_refused(_kernels.forward, arguments, defect)
        assert not np.any(out), defect

    grads = np.zeros_like(params)
    work7 = np.zeros(_kernels.workspace_size(sizes, 7))
    _kernels.loss_and_gradients(params, grads, sizes, codes, 0, X, Y, work7, 0.0)
    gradient_defects = {
        "work for fewer rows": (params, grads, sizes, codes, 0, X, Y,
                                np.zeros(_kernels.workspace_size(sizes, 6)), 0.0),
        "grads too short": (params, grads[:-1], sizes, codes, 0, X, Y, work7, 0.0),
        "no rows": (params, grads, sizes, codes, 0, X[:0], Y[:0], work7, 0.0),
        "Y too wide": (params, grads, sizes, codes, 0, X, np.zeros((7, 4)), work7, 0.0),
    }
    for defect, arguments in gradient_defects.items():
        _assert_refused(_kernels.loss_and_gradients, arguments, defect)


def _assert_refused(kernel, arguments, defect):
    try:
        kernel(*arguments)
    except ValueError:
        return
    raise AssertionError(f"{kernel.__name__} accepted arguments with {defect}")


@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=4),
       n_samples=st.integers(0, 9), batch_size=st.integers(-1, 12),
       work_slack=st.integers(-3, 2), n_order=st.integers(0, 10),
       optimizer=st.sampled_from([(0, 0.0), (0, 0.9), (1, 0.0), (2, 0.0)]),
       dtype=st.sampled_from([np.float64, np.float32]))
def test_the_epoch_kernel_accepts_only_what_it_can_run_safely(
        sizes, n_samples, batch_size, work_slack, n_order, optimizer, dtype):
    # Random, often inconsistent, argument sizes, every buffer allocated at
    # exactly its stated size: the kernel raises ValueError or runs within
    # its buffers (which the AddressSanitizer build verifies). A batch never
    # holds more than the data, so the work only needs room for
    # min(batch_size, n_samples) rows (one row when there is no data).
    arguments = kernel_arguments(dtype, n_samples, max(batch_size, 1), sizes)
    arguments["batch_size"] = batch_size
    capacity = min(max(batch_size, 1), max(n_samples, 1))
    needed = _kernels.workspace_size(arguments["sizes"], capacity)
    arguments["work"] = np.zeros(max(0, needed + work_slack), dtype)
    arguments["order"] = np.random.default_rng(0).permutation(n_order)
    arguments["X"] = np.random.default_rng(1).random(arguments["X"].shape).astype(dtype)
    code, momentum = optimizer
    try:
        total, n_correct = epoch_kernel(arguments, optimizer=code, momentum=momentum)
    except ValueError:
        return
    assert batch_size >= 1 and work_slack >= 0
    assert n_order in (0, n_samples)
    assert np.isfinite(total) and 0 <= n_correct <= n_samples
