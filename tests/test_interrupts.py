"""Ctrl-C: a real SIGINT stops a long fit or forward pass quickly and cleanly.

Each test runs a child Python that starts a long call and reports on stdout;
the test sends it SIGINT in the middle of the call (well inside an epoch, so
inside the GIL-free kernel) and reads back, as JSON, what the child saw:
how long after the signal the KeyboardInterrupt arrived, and the state of
the network and trainer afterwards.

CLOCK_MONOTONIC is one clock for every process on Linux, so the child's
time.monotonic() at the exception minus the parent's just before the
signal is the latency of the interrupt.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="SIGINT to a child, and one monotonic clock for all processes: Linux",
)

# "Within a fraction of a second": the kernels look for signals about every
# 2e6 multiply-adds (~a millisecond); 0.5 s leaves room for a loaded machine
# but not for waiting out the rest of an epoch (~1 s here).
MAX_LATENCY = 0.5

FIT_CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from fastbp import LambdaCallback, Network, Trainer

    N_SAMPLES, BATCH = 30000, 10
    rng = np.random.default_rng(0)
    X = rng.random((N_SAMPLES, 784))
    labels = rng.integers(0, 10, N_SAMPLES)

    def make():
        net = Network([784, 256, 10], seed=0)
        return net, Trainer(net, learning_rate=0.1, batch_size=BATCH, seed=1)

    net, trainer = make()
    completed = []

    def on_epoch_end(trainer_, epoch, history):
        completed.append(epoch)
        print("EPOCH", epoch, flush=True)

    try:
        trainer.fit(X, labels, epochs=1000,
                    callbacks=[LambdaCallback(on_epoch_end=on_epoch_end)])
    except KeyboardInterrupt:
        caught = time.monotonic()
    else:
        print(json.dumps({"interrupted": False}), flush=True)
        sys.exit(0)

    params = net.get_parameters()
    epoch = trainer.epoch
    history_lengths = {k: len(v) for k, v in trainer.history.items()}
    batches_per_epoch = -(-N_SAMPLES // BATCH)
    partial = trainer._optimizer.updates - trainer.epoch * batches_per_epoch

    # Replay: the same seeds, the finished epochs, then the interrupted
    # epoch's permutation cut after the batches that completed, in order.
    replay_net, replay = make()
    replay.fit(X, labels, epochs=len(completed))
    order = replay._rng.permutation(N_SAMPLES)[:partial * BATCH]
    if partial:
        replay.shuffle = False
        replay.fit(X[order], labels[order], epochs=1)

    # and training goes on
    again = trainer.fit(X[:2000], labels[:2000], epochs=1)

    print(json.dumps({
        "interrupted": True,
        "caught": caught,
        "completed": completed,
        "epoch": epoch,
        "history_lengths": history_lengths,
        "partial_batches": partial,
        "finite": bool(np.isfinite(params).all()),
        "replay_identical": bool(np.array_equal(params, replay_net.get_parameters())),
        "continued_loss": again["loss"],
        "continued_finite": bool(np.isfinite(net.get_parameters()).all()),
        "epoch_after": trainer.epoch,
    }), flush=True)
""")

FORWARD_CHILD = textwrap.dedent("""
    import json, time
    import numpy as np
    from fastbp import Network, Trainer

    rng = np.random.default_rng(0)
    X = rng.random((20000, 784), dtype=np.float32)
    net = Network([784, 2048, 2048, 10], dtype="float32", seed=0)
    probe = net.forward(X[:7])
    print("START", flush=True)
    started = time.monotonic()
    try:
        net.forward(X)
    except KeyboardInterrupt:
        caught = time.monotonic()
    else:
        print(json.dumps({"interrupted": False,
                          "seconds": time.monotonic() - started}), flush=True)
        raise SystemExit(0)
    # the network is as it was, and free for any use (its usage mark is gone)
    same = bool(np.array_equal(net.forward(X[:7]), probe))
    history = Trainer(net, learning_rate=0.1).fit(X[:100], rng.integers(0, 10, 100),
                                                  epochs=1)
    print(json.dumps({"interrupted": True, "caught": caught, "same": same,
                      "trained": bool(np.isfinite(history["loss"][0]))}), flush=True)
""")


def _interrupt(script, tmp_path, ready, delay, timeout=120):
    """Run `script`; send SIGINT `delay` s after it prints a line starting with `ready`.

    Returns (time the signal was sent, the child's last stdout line as JSON).
    """
    path = tmp_path / "child.py"
    path.write_text(script)
    child = subprocess.Popen([sys.executable, str(path)], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        for line in child.stdout:
            if line.startswith(ready):
                break
            assert time.monotonic() < deadline, "child never got ready"
        else:
            raise AssertionError(f"child ended early: {child.stderr.read()}")
        time.sleep(delay)
        sent = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    lines = out.strip().splitlines()
    assert lines, err
    return sent, json.loads(lines[-1])


def test_sigint_during_a_long_fit_stops_inside_the_epoch_and_leaves_a_usable_trainer(
        tmp_path):
    # SIGINT 0.3 s into the second epoch (about a second long)
    sent, report = _interrupt(FIT_CHILD, tmp_path, ready="EPOCH 1", delay=0.3)
    assert report["interrupted"], "the fit ended before the signal"
    latency = report["caught"] - sent
    assert 0 <= latency < MAX_LATENCY, f"KeyboardInterrupt {latency:.3f} s after SIGINT"

    completed = report["completed"]
    assert completed == list(range(1, len(completed) + 1)) and completed
    # history and epoch count cover exactly the finished epochs
    assert report["epoch"] == len(completed)
    assert set(report["history_lengths"].values()) == {len(completed)}
    # the interrupted epoch got part of the way and its updates were counted
    assert 0 < report["partial_batches"] < 3000
    # parameters: finite, and exactly those after the last completed batch
    assert report["finite"]
    assert report["replay_identical"]
    # and fit works again afterwards
    assert report["continued_finite"] and len(report["continued_loss"]) == 1
    assert report["epoch_after"] == len(completed) + 1


def test_sigint_during_a_long_forward_pass_stops_it_quickly(tmp_path):
    # the pass takes over a second; SIGINT 0.3 s in
    sent, report = _interrupt(FORWARD_CHILD, tmp_path, ready="START", delay=0.3)
    assert report["interrupted"], f"forward finished first ({report.get('seconds')} s)"
    latency = report["caught"] - sent
    assert 0 <= latency < MAX_LATENCY, f"KeyboardInterrupt {latency:.3f} s after SIGINT"
    assert report["same"] and report["trained"]
