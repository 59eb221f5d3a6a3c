"""SHA-256 digests of what fastbp computes over a grid of fits, for refactors.

Run it with one build, then another, on the same machine and BLAS thread
count; the two JSON files must be equal for the change to count as
behaviour-preserving, bit for bit:

    python tools/fit_digests.py > before.json
    ... rebuild ...
    python tools/fit_digests.py > after.json
    python tools/fit_digests.py --compare before.json after.json

Each case digests the final weights, the history (bar the wall-clock
``epoch_seconds``), the optimizer state and the contents of the checkpoint
and model files (member by member: the zip headers carry timestamps), and
for refused calls the exception type and message.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import warnings
import zipfile

import numpy as np

import fastbp
from fastbp import EarlyStopping, Network, ReduceOnPlateau, StepDecay, Trainer


def _data(dtype, n_samples=240, n_features=20, n_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n_samples, n_features)).astype(dtype)
    y = rng.integers(0, n_classes, n_samples)
    return X, y


class Digest:
    def __init__(self):
        self._hash = hashlib.sha256()

    def add(self, value):
        if isinstance(value, np.ndarray):
            self._hash.update(str((value.dtype.str, value.shape)).encode())
            self._hash.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, (list, tuple)):
            self._hash.update(b"[")
            for item in value:
                self.add(item)
            self._hash.update(b"]")
        elif isinstance(value, dict):
            self._hash.update(b"{")
            for key in sorted(value):
                self.add(str(key))
                self.add(value[key])
            self._hash.update(b"}")
        elif isinstance(value, float):
            self._hash.update(np.float64(value).tobytes())
        else:
            self._hash.update(repr(value).encode())

    def hexdigest(self):
        return self._hash.hexdigest()


def _history(history):
    return {key: values for key, values in history.items() if key != "epoch_seconds"}


def _npz_members(path):
    """Member name -> bytes, with the meta JSON's epoch_seconds dropped."""
    members = {}
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            data = archive.read(name)
            if name == "meta.npy":
                array = np.load(io.BytesIO(data), allow_pickle=False)
                meta = json.loads(str(array))
                meta["history"].pop("epoch_seconds", None)
                data = json.dumps(meta, sort_keys=True).encode()
            members[name] = data
    return members


def _trainer_state(trainer):
    """Digests of the parameters, history, checkpoint and model file, by part."""
    parts = {}
    parts["parameters"] = Digest()
    parts["parameters"].add(trainer.network.get_parameters())
    history = _history(trainer.history)
    parts["history_training"] = Digest()
    parts["history_training"].add({k: v for k, v in history.items() if not k.startswith("val_")})
    parts["history_validation"] = Digest()
    parts["history_validation"].add({k: v for k, v in history.items() if k.startswith("val_")})
    parts["repr"] = Digest()
    parts["repr"].add([trainer.epoch, trainer.current_learning_rate, repr(trainer),
                       repr(trainer.network)])
    parts["checkpoint"] = Digest()
    parts["model_file"] = Digest()
    with tempfile.TemporaryDirectory() as directory:
        checkpoint = os.path.join(directory, "checkpoint.npz")
        trainer.save_checkpoint(checkpoint)
        for name, data in sorted(_npz_members(checkpoint).items()):
            if name == "meta.npy":
                # the history is digested above; the rest of the meta here
                meta = json.loads(data)
                meta.pop("history")
                data = json.dumps(meta, sort_keys=True).encode()
            parts["checkpoint"].add(name)
            parts["checkpoint"].add(data)
        model = os.path.join(directory, "model.npz")
        trainer.network.save(model)
        for name, data in sorted(_npz_members(model).items()):
            parts["model_file"].add(name)
            parts["model_file"].add(data)
        resumed = Trainer.load_checkpoint(checkpoint)
        parts["checkpoint"].add(repr(resumed))
    return parts


OPTIMIZERS = {
    "sgd": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "sgd_l1": {"l1": 1e-4},
    "sgd_decay": {"weight_decay": 1e-3},
    "sgd_l1_l2": {"l1": 1e-4, "l2": 1e-3},
    "momentum_l1_l2": {"momentum": 0.5, "l1": 1e-4, "l2": 1e-3},
    "rmsprop": {"optimizer": "rmsprop", "learning_rate": 0.01},
    "adam": {"optimizer": "adam", "learning_rate": 0.01},
    "adam_l1": {"optimizer": "adam", "learning_rate": 0.01, "l1": 1e-4},
    "adam_l1_l2": {"optimizer": "adam", "learning_rate": 0.01, "l1": 1e-4, "l2": 1e-3},
    "adamw": {"optimizer": "adamw", "learning_rate": 0.01},
    "adamw_decay": {"optimizer": "adamw", "learning_rate": 0.01, "weight_decay": 0.1},
}

MESSAGES = False

SCHEDULES = [None, "step", "exponential", "invscaling", "plateau"]

NETWORKS = {
    "sigmoid": ([20, 16, 5], "sigmoid", "sigmoid", "mse"),
    "relu_softmax": ([20, 33, 9, 5], "relu", "softmax", "cross_entropy"),
    "tanh_sigmoid_ce": ([20, 12, 5], "tanh", "sigmoid", "cross_entropy"),
    "mixed_softmax_mse": ([20, 10, 7, 5], ["tanh", "identity"], "softmax", "mse"),
}


def cases():
    for dtype in ("float64", "float32"):
        X, y = _data(dtype)
        for opt_name, opt in OPTIMIZERS.items():
            for shuffle in (True, False):
                for batch in (10, 64):
                    yield (f"{dtype}/{opt_name}/shuffle={shuffle}/batch={batch}",
                           dtype, X, y, "sigmoid", dict(opt, shuffle=shuffle,
                                                        batch_size=batch), {})
        for schedule in SCHEDULES:
            yield (f"{dtype}/schedule={schedule}", dtype, X, y, "relu_softmax",
                   {"optimizer": "sgd", "learning_rate": 0.3, "schedule": schedule,
                    "batch_size": 16}, {"validation_split": 0.2})
        for net_name in NETWORKS:
            for opt_name in ("sgd", "momentum", "adam"):
                opt = dict(OPTIMIZERS[opt_name])
                opt.setdefault("learning_rate", 0.5)
                yield (f"{dtype}/net={net_name}/{opt_name}", dtype, X, y, net_name,
                       dict(opt, batch_size=7, l2=1e-3), {"validation_data": (X[:50], y[:50])})
        yield (f"{dtype}/early_stopping", dtype, X, y, "sigmoid",
               {"learning_rate": 3.0, "batch_size": 10},
               {"validation_split": 0.25,
                "callbacks": [EarlyStopping(monitor="val_loss", patience=1)]})
        yield (f"{dtype}/plateau_custom", dtype, X, y, "relu_softmax",
               {"learning_rate": 0.5, "batch_size": 20,
                "schedule": ReduceOnPlateau(monitor="loss", patience=1, factor=0.5)}, {})
        yield (f"{dtype}/step_custom_adam", dtype, X, y, "relu_softmax",
               {"optimizer": "adam", "learning_rate": 0.01, "batch_size": 256,
                "schedule": StepDecay(step_size=2, gamma=0.3)}, {})


def run_case(dtype, X, y, net_name, trainer_args, fit_args, epochs=5):
    sizes, activation, output, loss = NETWORKS[net_name]
    net = Network(sizes, activation=activation, output=output, dtype=dtype, seed=1)
    args = dict(trainer_args)
    args.setdefault("loss", loss)
    trainer = Trainer(net, seed=2, **args)
    trainer.fit(X, y, epochs=epochs, **fit_args)
    # continue: a second call, partial_fit and a step
    trainer.fit(X, y, epochs=2, **fit_args)
    partial = {key: value for key, value in fit_args.items() if key != "validation_split"}
    if "validation_split" in fit_args:
        partial["validation_data"] = (X[:40], y[:40])
    trainer.partial_fit(X, y, **partial)
    parts = _trainer_state(trainer)
    for name, compute in (
        ("step", lambda: trainer.step(X[:13], y[:13])),
        ("evaluate", lambda: trainer.evaluate(X, y)),
        ("loss_and_gradients", lambda: trainer.loss_and_gradients(X[:31], y[:31])),
        ("forward", lambda: [net.forward(X), net.predict(X)]),
    ):
        parts[name] = Digest()
        parts[name].add(compute())
    return {name: digest.hexdigest() for name, digest in parts.items()}


def _joined(parts):
    return [parts[name].hexdigest() for name in sorted(parts)]


def special_cases():
    """Divergence, refusals and interrupts of the NaN check: messages and state."""
    out = {}
    for dtype in ("float64", "float32"):
        X, y = _data(dtype)
        for mode in ("raise", "warn"):
            net = Network([20, 16, 5], dtype=dtype, seed=1)
            trainer = Trainer(net, learning_rate=1e6, loss="mse", seed=2,
                              on_divergence=mode, optimizer="sgd", momentum=0.9)
            digest = Digest()
            big = X * 1e3
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    trainer.fit(big, y * 1e6 if False else y, epochs=5)
                except fastbp.DivergenceError as exc:
                    digest.add(["DivergenceError", str(exc)])
                try:
                    trainer.step(big, y)
                except fastbp.DivergenceError as exc:
                    digest.add(["DivergenceError", str(exc)])
            digest.add([str(w.message) for w in caught])
            digest.add([w.category.__name__ for w in caught])
            digest.add(_joined(_trainer_state(trainer)))
            out[f"{dtype}/divergence/{mode}"] = digest.hexdigest()

        # NaN in X found by the epoch kernel: everything undone
        net = Network([20, 16, 5], dtype=dtype, seed=1)
        trainer = Trainer(net, optimizer="adam", learning_rate=0.01, seed=2)
        trainer.fit(X, y, epochs=1)
        bad = X.copy()
        bad[200, 3] = np.nan
        digest = Digest()
        try:
            trainer.fit(bad, y, epochs=3)
        except ValueError as exc:
            digest.add(str(exc))
        digest.add(_joined(_trainer_state(trainer)))
        digest.add(_history(trainer.history))
        digest.add(trainer.epoch)
        out[f"{dtype}/nan_input_undone"] = digest.hexdigest()

    # refused arguments: type, message
    net = Network([4, 3, 2], seed=0)
    X = np.zeros((5, 4))
    y = np.array([0, 1, 0, 1, 1])
    attempts = [
        lambda: Network([4]),
        lambda: Network([4, "a"]),
        lambda: Network([4, 0, 2]),
        lambda: Network([4, 3, 2], activation="bogus"),
        lambda: Network([4, 3, 2], activation=["relu", "tanh"]),
        lambda: Network([4, 3, 2], output="relu"),
        lambda: Network([4, 3, 2], dtype="int32"),
        lambda: Network([4, 3, 2], seed=-1),
        lambda: Network([4, 3, 2], seed=1.5),
        lambda: Trainer(net, loss="hinge"),
        lambda: Trainer(net, learning_rate=0),
        lambda: Trainer(net, learning_rate="1"),
        lambda: Trainer(net, batch_size=0),
        lambda: Trainer(net, batch_size=2.0),
        lambda: Trainer(net, l2=-1),
        lambda: Trainer(net, optimizer="sgdx"),
        lambda: Trainer(net, momentum=1.0),
        lambda: Trainer(net, momentum=0.5, optimizer="adam"),
        lambda: Trainer(net, nesterov=True),
        lambda: Trainer(net, weight_decay=-1.0),
        lambda: Trainer(net, weight_decay="x"),
        lambda: Trainer(net, rho=1.0),
        lambda: Trainer(net, beta1=-0.1),
        lambda: Trainer(net, epsilon=0),
        lambda: Trainer(net, on_divergence="ignore"),
        lambda: Trainer(net, schedule="bogus"),
        lambda: Trainer(net, schedule=3),
        lambda: Trainer(Network([4, 3, 2], output="identity"), loss="cross_entropy"),
        lambda: Trainer("net"),
        lambda: Trainer(net).fit(X, y, epochs=-1),
        lambda: Trainer(net).fit(X, y, epochs=1.5),
        lambda: Trainer(net).fit(X, y, verbose=3),
        lambda: Trainer(net).fit(X, y, validation_split=1.0),
        lambda: Trainer(net).fit(X, y, validation_split=0.5, validation_data=(X, y)),
        lambda: Trainer(net).fit(X, y, validation_data=X),
        lambda: Trainer(net).fit(X, y, callbacks=[object()]),
        lambda: Trainer(net).fit(X, y, callbacks=EarlyStopping()),
        lambda: Trainer(net).fit(X, y, callbacks=[EarlyStopping()]),
        lambda: Trainer(net, schedule="plateau").fit(X, y),
        lambda: Trainer(net).fit(X[:, :3], y),
        lambda: Trainer(net).fit(X, y[:3]),
        lambda: Trainer(net).fit(X, y + 5),
        lambda: Trainer(net).fit(X.ravel(), y),
        lambda: Trainer(net).fit(np.full((5, 4), np.inf), y),
        lambda: Trainer(net).fit(X, np.full((5, 2), np.nan)),
        lambda: Trainer(net).fit(X.astype(object), y),
        lambda: Trainer(net).fit(X + 1j, y),
        lambda: Trainer(net).step(X[:0], y[:0]),
        lambda: Trainer(net).evaluate(X, y[:, None]),
        lambda: Trainer(net).loss_and_gradients(X, np.array([0.5, 1, 0, 1, 1])),
        lambda: net.forward(X[:, :2]),
        lambda: net.set_parameters(np.zeros(3)),
        lambda: net.weights.__setitem__(0, np.zeros((2, 2))),
        lambda: net.weights.append(1),
        lambda: setattr(net, "weights", [np.zeros((3, 4))]),
        lambda: net.weights.__setitem__(0, np.full((3, 4), np.nan)),
        lambda: Network.load("/nonexistent/file.npz"),
        lambda: EarlyStopping(monitor="bogus"),
        lambda: EarlyStopping(patience=-1),
        lambda: ReduceOnPlateau(factor=1.0),
        lambda: StepDecay(step_size=0),
    ]
    for index, attempt in enumerate(attempts):
        refusal = Digest()
        try:
            attempt()
        except Exception as exc:  # noqa: BLE001 - the point is to record it
            # object reprs carry addresses, which move between runs
            message = [type(exc).__name__, re.sub(r" at 0x[0-9a-f]+", "", str(exc))]
            if MESSAGES:
                print(f"{index:02d}", *message, sep="\t")
            refusal.add(message)
        else:
            refusal.add("accepted")
        out[f"refusal/{index:02d}"] = refusal.hexdigest()
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--messages", action="store_true",
                        help="print the refused calls' messages instead of digests")
    args = parser.parse_args(argv)
    if args.messages:
        global MESSAGES
        MESSAGES = True
        special_cases()
        return 0
    if args.compare:
        with open(args.compare[0]) as a, open(args.compare[1]) as b:
            before, after = json.load(a), json.load(b)
        differ = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        print(f"{len(before)} cases before, {len(after)} after, {len(differ)} differ")
        for key in differ:
            print("  differs:", key)
        return 1 if differ else 0
    out = {}
    for name, dtype, X, y, net_name, trainer_args, fit_args in cases():
        for part, value in run_case(dtype, X, y, net_name, trainer_args, fit_args).items():
            out[f"{name}:{part}"] = value
    out.update(special_cases())
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
