"""Reliability under threads: the GIL is released, objects are not raced, BLAS threads.

fastbp runs inside other programs' threads. These tests check that

- the kernels of `fit`, `step` and `forward` run without the GIL: a Python
  loop in the main thread keeps running while they work in another thread;
- two trainers on two networks in two threads run at the same time and end
  with the very weights each gets when run alone;
- using one Trainer or one Network from two threads at once is refused with
  a RuntimeError, and the call already running is not disturbed by it;
- threadpoolctl finds and limits the BLAS that the kernels call (SciPy's
  OpenBLAS), and with one BLAS thread results are reproducible.
"""

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from fastbp import LambdaCallback, Network, Trainer
from helpers import classification, optimizer_state, update_count

# A worker thread's kernel call must let the main thread run Python: the
# longest pause of a busy main-thread loop during the call stays far below
# the call's length. 0.1 s is ~100x what is seen with the GIL released (the
# Python parts of a call hold it for well under a millisecond) and a
# fraction of the >= 0.3 s that the calls below take.
MAX_MAIN_THREAD_PAUSE = 0.1
MIN_CALL_SECONDS = 0.3


def longest_main_thread_pause(target):
    """Run `target` in a thread; return (longest pause of a main-thread loop, loops, seconds).

    The clock starts before `Thread.start`, which itself waits for the GIL:
    a call that holds the GIL from its first instruction shows up too.
    """
    elapsed = {}

    def timed():
        started = time.perf_counter()
        target()
        elapsed["seconds"] = time.perf_counter() - started

    worker = threading.Thread(target=timed)
    last = time.perf_counter()
    worker.start()
    longest, loops = 0.0, 0
    while worker.is_alive():
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
        loops += 1
    longest = max(longest, time.perf_counter() - last)
    worker.join()
    return longest, loops, elapsed["seconds"]


def test_the_pause_detector_sees_a_call_that_holds_the_gil():
    # The detector itself: sum() over a range is one C call that never lets
    # go of the GIL, so the main thread stalls for about all of it.
    longest, _, seconds = longest_main_thread_pause(lambda: sum(range(10**7)))
    assert longest >= 0.8 * seconds


@pytest.fixture(scope="module")
def mnist_like():
    rng = np.random.default_rng(0)
    X = rng.random((12000, 784))
    labels = rng.integers(0, 10, X.shape[0])
    return X, labels


def _long_fit(X, labels):
    net = Network([784, 256, 10], seed=0)
    trainer = Trainer(net, learning_rate=0.1, batch_size=10, seed=0)
    # three epochs: one lasts under MIN_CALL_SECONDS on a fast AVX-512 machine
    return lambda: trainer.fit(X, labels, epochs=3)


def _long_step(X, labels):
    net = Network([784, 1024, 512, 10], seed=0, dtype="float32")
    trainer = Trainer(net, learning_rate=0.1, seed=0)
    X32 = X[:6000].astype(np.float32)
    return lambda: trainer.step(X32, labels[:6000])


def _long_forward(X, labels):
    net = Network([784, 1024, 1024, 10], seed=0, dtype="float32")
    X32 = X.astype(np.float32)
    return lambda: net.forward(X32)


@pytest.mark.parametrize("make_call", [_long_fit, _long_step, _long_forward],
                         ids=["fit", "step", "forward"])
def test_kernel_calls_release_the_gil(mnist_like, make_call):
    call = make_call(*mnist_like)
    longest, loops, seconds = longest_main_thread_pause(call)
    assert seconds >= MIN_CALL_SECONDS, "the call is too short to tell anything"
    assert longest < MAX_MAIN_THREAD_PAUSE, (
        f"the main thread stalled {longest:.3f} s during a {seconds:.3f} s call: "
        f"the GIL was held"
    )
    assert loops > 1000


# ------------------------------------------------------- two trainers, two threads


def _train(job, callbacks=None):
    """Train a fresh network as `job` says; returns (parameters, history)."""
    net = Network(job["sizes"], activation=job["activation"], output="softmax",
                  dtype=job["dtype"], seed=job["seed"])
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.05,
                      batch_size=job["batch_size"], optimizer=job["optimizer"],
                      momentum=job["momentum"], seed=job["seed"] + 1)
    history = trainer.fit(job["X"], job["y"], epochs=job["epochs"], callbacks=callbacks)
    return net.get_parameters(), history["loss"]


JOBS = [
    # small batches (register-blocked kernels) and large ones (BLAS), both dtypes
    dict(sizes=[64, 128, 10], activation="sigmoid", dtype="float64", batch_size=10,
         optimizer="sgd", momentum=0.9, seed=1, epochs=6),
    dict(sizes=[64, 96, 64, 10], activation="relu", dtype="float32", batch_size=64,
         optimizer="adam", momentum=0.0, seed=2, epochs=12),
]


def test_two_trainers_in_two_threads_run_concurrently_and_match_running_alone():
    jobs = []
    for k, job in enumerate(JOBS):
        X, y = classification(3000, 64, 10, seed=10 + k)
        jobs.append(dict(job, X=X, y=y))
    alone = [_train(job) for job in jobs]

    barrier = threading.Barrier(len(jobs))
    spans = [[] for _ in jobs]
    results = [None] * len(jobs)
    errors = []

    def work(k):
        def stamp(trainer, epoch, history):
            spans[k].append(time.perf_counter())
        try:
            barrier.wait(timeout=30)
            spans[k].append(time.perf_counter())
            results[k] = _train(jobs[k], callbacks=[LambdaCallback(on_epoch_end=stamp)])
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for k, (params, losses) in enumerate(results):
        np.testing.assert_array_equal(params, alone[k][0], err_msg=f"job {k} parameters")
        assert losses == alone[k][1]
    # Both made progress at the same time: each finished an epoch while the
    # other was still running.
    first, second = spans
    assert first[1] < second[-1] and second[1] < first[-1]


# ------------------------------------------------- one object, two threads at once


@pytest.fixture
def paused_fit():
    """A fit running in a worker thread, held at the end of its first epoch.

    Yields (network, trainer, data, resume); `resume()` lets it finish and
    returns its history. While it is held the trainer and network are in
    use by that fit exactly as during its kernels (the usage marks span the
    whole call), so conflicting calls from the test's thread are certain to
    overlap it.
    """
    X, y = classification(600, 64, 10, seed=3)
    net = Network([64, 32, 10], seed=5)
    trainer = Trainer(net, learning_rate=0.5, batch_size=16, momentum=0.5, seed=6)
    inside, go_on = threading.Event(), threading.Event()
    outcome = {}

    def hold(trainer_, epoch, history):
        if epoch == 1:
            inside.set()
            go_on.wait(timeout=30)

    def work():
        try:
            outcome["history"] = trainer.fit(
                X, y, epochs=4, callbacks=[LambdaCallback(on_epoch_end=hold)])
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=work)
    worker.start()
    assert inside.wait(timeout=30)

    def resume():
        go_on.set()
        worker.join(timeout=60)
        assert "error" not in outcome, outcome.get("error")
        return outcome["history"]

    yield net, trainer, (X, y), resume
    go_on.set()
    worker.join(timeout=60)


def _reference_fit():
    """What the paused fit gives when nothing else happens meanwhile."""
    X, y = classification(600, 64, 10, seed=3)
    net = Network([64, 32, 10], seed=5)
    trainer = Trainer(net, learning_rate=0.5, batch_size=16, momentum=0.5, seed=6)
    history = trainer.fit(X, y, epochs=4)
    return net.get_parameters(), trainer, history


BUSY = "in use by another thread"


def test_using_a_busy_trainer_or_network_from_another_thread_raises(paused_fit):
    net, trainer, (X, y), resume = paused_fit
    before = net.get_parameters()
    other = Trainer(net, learning_rate=0.1, seed=0)
    attempts = {
        "trainer.fit": lambda: trainer.fit(X, y, epochs=1),
        "trainer.partial_fit": lambda: trainer.partial_fit(X, y),
        "trainer.step": lambda: trainer.step(X[:16], y[:16]),
        "trainer.loss_and_gradients": lambda: trainer.loss_and_gradients(X[:16], y[:16]),
        "trainer.evaluate": lambda: trainer.evaluate(X, y),
        "network.forward": lambda: net.forward(X),
        "network.predict": lambda: net.predict(X),
        "second trainer.fit": lambda: other.fit(X, y, epochs=1),
        "second trainer.step": lambda: other.step(X[:16], y[:16]),
        "second trainer.evaluate": lambda: other.evaluate(X, y),
    }
    for what, attempt in attempts.items():
        with pytest.raises(RuntimeError, match=BUSY) as info:
            attempt()
        message = str(info.value)
        assert "Network.copy()" in message and "lock" in message, what
    # nothing was touched by the refused calls
    np.testing.assert_array_equal(net.get_parameters(), before)

    history = resume()
    expected_params, expected_trainer, expected_history = _reference_fit()
    np.testing.assert_array_equal(net.get_parameters(), expected_params)
    assert history["loss"] == expected_history["loss"]
    assert trainer.epoch == 4 and update_count(trainer) == update_count(expected_trainer)
    np.testing.assert_array_equal(optimizer_state(trainer)[0],
                                  optimizer_state(expected_trainer)[0])
    # and once the fit is over, the objects are free again
    assert np.isfinite(net.forward(X)).all()
    other.fit(X, y, epochs=1)


def test_a_refused_fit_with_validation_split_leaves_the_running_fit_intact(paused_fit):
    # The refused call must not touch the trainer: drawing its validation
    # split from the trainer's generator before finding the trainer busy
    # would change the permutations of the running fit's later epochs.
    net, trainer, (X, y), resume = paused_fit
    with pytest.raises(RuntimeError, match=BUSY):
        trainer.fit(X, y, epochs=1, validation_split=0.2)
    resume()
    expected_params, _, _ = _reference_fit()
    np.testing.assert_array_equal(net.get_parameters(), expected_params)


def test_saving_a_network_or_checkpoint_while_another_thread_trains_it_raises(
        paused_fit, tmp_path):
    # A save reads the parameters; while a fit in another thread may be
    # updating them it would write a torn mixture of two batches' weights.
    net, trainer, _, resume = paused_fit
    with pytest.raises(RuntimeError, match=BUSY):
        net.save(tmp_path / "net.npz")
    with pytest.raises(RuntimeError, match=BUSY):
        trainer.save_checkpoint(tmp_path / "checkpoint.npz")
    resume()
    assert list(tmp_path.iterdir()) == []


def test_fit_in_one_thread_and_forward_in_another_during_the_kernels():
    # Not held in a callback: the main thread calls forward while the
    # worker's epoch kernels are running.
    X, y = classification(4000, 64, 10, seed=4)
    net = Network([64, 128, 10], seed=0)
    trainer = Trainer(net, learning_rate=0.1, batch_size=10, seed=0)
    first_epoch_done = threading.Event()
    outcome = {}

    def work():
        outcome["history"] = trainer.fit(
            X, y, epochs=8,
            callbacks=[LambdaCallback(on_epoch_end=lambda *args: first_epoch_done.set())])

    worker = threading.Thread(target=work)
    worker.start()
    assert first_epoch_done.wait(timeout=30)
    refused = 0
    while worker.is_alive():
        try:
            net.forward(X[:50])
        except RuntimeError as exc:
            assert BUSY in str(exc)
            refused += 1
        else:
            # only possible once the fit has returned
            worker.join(timeout=0.5)
            assert not worker.is_alive(), "forward ran while fit held the network"
    worker.join()
    assert refused >= 1
    reference = Network([64, 128, 10], seed=0)
    Trainer(reference, learning_rate=0.1, batch_size=10, seed=0).fit(X, y, epochs=8)
    np.testing.assert_array_equal(net.get_parameters(), reference.get_parameters())
    assert len(outcome["history"]["loss"]) == 8


def test_concurrent_forward_passes_on_one_network_are_allowed_and_agree():
    X, _ = classification(20000, 64, 10, seed=5)
    net = Network([64, 256, 10], activation="tanh", output="softmax", seed=0)
    expected = net.forward(X)
    results, errors = [None] * 4, []
    barrier = threading.Barrier(4)

    def work(k):
        try:
            barrier.wait(timeout=30)
            results[k] = net.forward(X)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    for result in results:
        np.testing.assert_array_equal(result, expected)


# ------------------------------------------------------------------ BLAS threads


def _is_scipy_blas(entry):
    return entry["user_api"] == "blas" and "scipy" in entry["filepath"].replace("\\", "/")


def test_threadpoolctl_finds_scipys_blas_once_fastbp_is_imported(tmp_path):
    # In a fresh interpreter: the kernels' BLAS is SciPy's OpenBLAS, loaded
    # by `import fastbp` (through scipy.linalg.cython_blas) and visible to
    # threadpoolctl, which is how an application limits its threads.
    script = (
        "import json\n"
        "from threadpoolctl import threadpool_info\n"
        "before = threadpool_info()\n"
        "import fastbp\n"
        "print(json.dumps({'before': before, 'after': threadpool_info()}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert not any(_is_scipy_blas(entry) for entry in info["before"])
    scipy_blas = [entry for entry in info["after"] if _is_scipy_blas(entry)]
    assert scipy_blas, info["after"]
    assert scipy_blas[0]["internal_api"] in ("openblas", "mkl", "blis", "flexiblas")


def _fit_parameters(optimizer, batch_size, dtype):
    rng = np.random.default_rng(21)
    X = rng.random((1200, 96)).astype(dtype)
    y = rng.integers(0, 10, 1200)
    net = Network([96, 160, 80, 10], activation="relu", output="softmax", dtype=dtype,
                  seed=3)
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.01, batch_size=batch_size,
                      optimizer=optimizer, seed=4)
    trainer.fit(X, y, epochs=2)
    return net.get_parameters()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_blas_thread_per_call_is_applied_and_reproducible(dtype):
    # batch 128: every product goes through BLAS
    with threadpool_limits(limits=1, user_api="blas"):
        limited = [entry for entry in threadpool_info() if _is_scipy_blas(entry)]
        assert limited and all(entry["num_threads"] == 1 for entry in limited)
        first = _fit_parameters("adam", 128, dtype)
        second = _fit_parameters("adam", 128, dtype)
    np.testing.assert_array_equal(first, second)
    # the limit is lifted on leaving the block
    restored = [entry for entry in threadpool_info() if _is_scipy_blas(entry)]
    assert restored
    # Same thread count again (the default), same bits again.
    np.testing.assert_array_equal(_fit_parameters("adam", 128, dtype),
                                  _fit_parameters("adam", 128, dtype))
