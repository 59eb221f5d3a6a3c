"""Resources: no growth over many calls, no allocation per step, workspace freed.

- tracemalloc (which sees NumPy's array buffers too) and the resident set
  size from /proc/self/statm stay flat over 200 `fit` calls (and the other
  entry points) on one trainer, after a warm-up of 20;
- the Python side runs once per epoch, not once per batch: the epoch kernel
  is called once per epoch, and the peak of traced memory during a fit does
  not depend on the number of epochs or batches;
- the trainer's workspace and optimizer state go away with the trainer.
"""

import gc
import os
import sys
import tracemalloc
import weakref

import numpy as np
import pytest

from fastbp import DivergenceError, Network, Trainer, _kernels
from helpers import EPOCH_KERNEL_ARGUMENTS, classification, parameter_buffer, trainer_buffers


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_traced_memory_stays_flat_over_200_fits(optimizer):
    X, y = classification(200, 16, 4)
    X_val, y_val = classification(50, 16, 4, seed=1)
    net = Network([16, 32, 4], seed=0)
    trainer = Trainer(net, learning_rate=0.1, batch_size=10, optimizer=optimizer, seed=0)
    sizes = []
    tracemalloc.start()
    try:
        for call in range(200):
            trainer.fit(X, y, epochs=1, validation_data=(X_val, y_val))
            # The history is meant to grow, one entry per epoch and metric;
            # anything else that grows is a leak.
            trainer.history.clear()
            if call in (19, 199):
                gc.collect()
                sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    growth = sizes[1] - sizes[0]
    # 180 calls: a leak of one parameter-sized array per call would be ~1 MB,
    # of one small Python object per call a few tens of kB
    assert growth < 16_000, f"traced memory grew by {growth} bytes over 180 fits"


def _rss_bytes():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/statm")
def test_resident_memory_stays_flat_over_200_calls_of_every_entry_point():
    X, y = classification(1000, 64, 10)
    net = Network([64, 128, 10], seed=0)
    trainer = Trainer(net, learning_rate=0.05, batch_size=100, optimizer="adam", seed=0)
    resident = []
    for call in range(200):
        trainer.fit(X, y, epochs=1)
        trainer.step(X[:100], y[:100])
        trainer.loss_and_gradients(X[:100], y[:100])
        trainer.evaluate(X, y)
        net.forward(X)
        trainer.history.clear()
        if call >= 19:
            resident.append(_rss_bytes())
    # each round handles ~0.5 MB of data and ~70 kB parameter copies:
    # keeping any of it per call would add tens of MB
    growth = resident[-1] - resident[0]
    assert growth < 4_000_000, f"RSS grew by {growth / 1e6:.1f} MB over 180 rounds"
    assert max(resident) - min(resident) < 8_000_000


def _fit_peak(trainer, X, y, **options):
    gc.collect()
    tracemalloc.start()
    try:
        trainer.fit(X, y, **options)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_of_a_fit_depends_on_neither_epochs_nor_batches():
    X, y = classification(20000, 64, 10)
    Y = np.eye(10)[y]           # 2-D targets: no one-hot copy to allocate
    net = Network([64, 8, 10], seed=0)
    trainer = Trainer(net, learning_rate=0.05, batch_size=10, momentum=0.9, seed=0)
    trainer.fit(X, Y, epochs=1)         # workspace and optimizer state exist now
    one = _fit_peak(trainer, X, Y, epochs=1)
    five = _fit_peak(trainer, X, Y, epochs=5)
    # Per epoch: a permutation (160 kB here) and a parameter copy (5 kB)
    # that the next epoch reuses the space of. Anything kept per epoch or per
    # batch (2000 batches an epoch), or two permutations alive at once, would
    # add to the peak.
    assert abs(five - one) < 8_000, (one, five)
    trainer.batch_size = 1              # 20000 batches an epoch, workspace smaller
    many_batches = _fit_peak(trainer, X, Y, epochs=1)
    assert many_batches - one < 8_000, (one, many_batches)


def test_the_epoch_kernel_runs_once_per_epoch(monkeypatch):
    calls = []
    real = _kernels.train_epoch

    def counting(*args, **kwargs):
        calls.append(args[EPOCH_KERNEL_ARGUMENTS.index("batch_size")])
        return real(*args, **kwargs)

    monkeypatch.setattr(_kernels, "train_epoch", counting)
    X, y = classification(1000, 8, 3)
    trainer = Trainer(Network([8, 6, 3], seed=0), learning_rate=0.1, batch_size=10, seed=0)
    trainer.fit(X, y, epochs=7)
    assert calls == [10] * 7            # 100 batches per epoch, one call each


def test_the_workspace_is_reused_not_reallocated():
    X, y = classification(500, 8, 3)
    trainer = Trainer(Network([8, 6, 3], seed=0), learning_rate=0.1, batch_size=10,
                      optimizer="adam", seed=0)
    trainer.fit(X, y, epochs=1)
    buffers = list(trainer_buffers(trainer).values())
    for _ in range(3):
        trainer.fit(X, y, epochs=2)
        trainer.step(X[:10], y[:10])
        trainer.loss_and_gradients(X[:10], y[:10])
    now = list(trainer_buffers(trainer).values())
    assert all(a is b for a, b in zip(now, buffers, strict=True))


def _trained(optimizer="adam"):
    X, y = classification(300, 32, 5)
    net = Network([32, 64, 5], activation="relu", output="identity", seed=0)
    trainer = Trainer(net, learning_rate=0.05, batch_size=16, optimizer=optimizer, seed=0)
    trainer.fit(X, y, epochs=2)
    return net, trainer


def test_the_workspace_is_freed_with_the_trainer():
    net, trainer = _trained()
    watched = [weakref.ref(trainer)] + [weakref.ref(buffer)
                                        for buffer in trainer_buffers(trainer).values()]
    del trainer
    gc.collect()
    assert [ref() is None for ref in watched] == [True] * len(watched)
    # the network lives on, unharmed
    assert np.isfinite(net.get_parameters()).all()


def test_the_trainer_is_freed_after_a_divergence_error():
    net, trainer = _trained("sgd")
    watched = [weakref.ref(trainer), weakref.ref(trainer_buffers(trainer)["work"])]
    trainer.learning_rate = 1e100
    X, y = classification(300, 32, 5)
    with pytest.raises(DivergenceError):
        trainer.fit(X * 1e3, np.eye(5)[y] * 1e3, epochs=3)
    del trainer
    gc.collect()
    assert all(ref() is None for ref in watched)


def test_a_network_and_its_trainer_are_freed_together():
    net, trainer = _trained()
    watched = [weakref.ref(net), weakref.ref(parameter_buffer(net)), weakref.ref(trainer)]
    del net, trainer
    gc.collect()
    assert all(ref() is None for ref in watched)
