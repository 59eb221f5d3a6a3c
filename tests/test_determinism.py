"""Determinism: what README's contract promises is bit-identical, tested.

Same network seed, trainer seed, data, dtype and BLAS thread count (and the
same machine and build): bit-identical weights and history, for every
optimizer with shuffling on, in one process or in two. Different seeds
give different weights. (Resuming from a checkpoint bit for bit is in
test_files.py, one BLAS thread per call in test_threads.py, a continued fit
equal to one longer fit in test_training.py.)
"""

import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastbp import Network

OPTIMIZERS = {
    "sgd": dict(optimizer="sgd"),
    "sgd+momentum": dict(optimizer="sgd", momentum=0.9),
    "nesterov": dict(optimizer="sgd", momentum=0.9, nesterov=True),
    "rmsprop": dict(optimizer="rmsprop", learning_rate=0.01),
    "adam": dict(optimizer="adam", learning_rate=0.01),
    "adamw": dict(optimizer="adamw", learning_rate=0.01),
}
# batch 10 runs the register-blocked small-batch kernels, 50 runs BLAS
SETTINGS = [(dtype, batch_size) for dtype in ("float64", "float32") for batch_size in (10, 50)]

# The same function runs here and in a child interpreter (its source is
# sent over), so both sides train exactly the same way.
TRAIN_SOURCE = textwrap.dedent('''
    def train(name, options, dtype, batch_size, net_seed=0, trainer_seed=1):
        import hashlib
        import numpy as np
        from fastbp import Network, Trainer
        rng = np.random.default_rng(123)
        X = rng.random((400, 20))
        y = rng.integers(0, 4, 400)
        net = Network([20, 24, 16, 4], activation=["tanh", "relu"], output="softmax",
                      dtype=dtype, seed=net_seed)
        options = dict(options)
        learning_rate = options.pop("learning_rate", 0.1)
        trainer = Trainer(net, loss="cross_entropy", learning_rate=learning_rate,
                          batch_size=batch_size, l2=1e-4, shuffle=True, seed=trainer_seed,
                          **options)
        history = trainer.fit(X, y, epochs=3, validation_data=(X[:50], y[:50]))
        digest = hashlib.sha256(net.get_parameters().tobytes())
        digest.update(np.asarray(history["loss"] + history["val_loss"]).tobytes())
        return digest.hexdigest()
''')
namespace = {}
exec(TRAIN_SOURCE, namespace)
train = namespace["train"]


@pytest.mark.parametrize("dtype,batch_size", SETTINGS)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_same_seeds_give_bit_identical_weights(name, dtype, batch_size):
    first = train(name, OPTIMIZERS[name], dtype, batch_size)
    assert train(name, OPTIMIZERS[name], dtype, batch_size) == first


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_different_seeds_give_different_weights(name, dtype):
    reference = train(name, OPTIMIZERS[name], dtype, 10)
    # another shuffling order only, then another initialization only
    assert train(name, OPTIMIZERS[name], dtype, 10, trainer_seed=2) != reference
    assert train(name, OPTIMIZERS[name], dtype, 10, net_seed=5) != reference


def test_network_seed_fixes_initial_weights():
    sizes = [6, 9, 4]
    assert np.array_equal(Network(sizes, seed=5).get_parameters(),
                          Network(sizes, seed=5).get_parameters())
    assert not np.array_equal(Network(sizes, seed=5).get_parameters(),
                              Network(sizes, seed=6).get_parameters())


def test_another_process_gets_the_same_bits(tmp_path):
    jobs = [(name, dtype, batch_size) for name in OPTIMIZERS for dtype, batch_size in SETTINGS]
    script = TRAIN_SOURCE + textwrap.dedent(f'''
        import json
        OPTIMIZERS = {OPTIMIZERS!r}
        jobs = {jobs!r}
        print(json.dumps([train(name, OPTIMIZERS[name], dtype, batch)
                          for name, dtype, batch in jobs]))
    ''')
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    theirs = json.loads(done.stdout)
    ours = [train(name, OPTIMIZERS[name], dtype, batch) for name, dtype, batch in jobs]
    assert theirs == ours


def test_a_digest_sees_a_one_ulp_change():
    # The comparisons above are of SHA-256 digests of the raw bytes: one
    # ulp anywhere changes them.
    params = Network([5, 4, 3], seed=0).get_parameters()
    nudged = params.copy()
    nudged[7] = np.nextafter(nudged[7], np.inf)
    assert (hashlib.sha256(params.tobytes()).hexdigest()
            != hashlib.sha256(nudged.tobytes()).hexdigest())
