"""fastbp.plots: each picture is a real, non-blank PNG drawn from a real fit (or
a report built like bench/report.py's JSON), and bad input is refused clearly.

Set FASTBP_PLOTS_DIR (e.g. /tmp/fastbp-plots) to keep the PNGs for a look.
"""

import builtins
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from fastbp import Network, Trainer, baseline, plots
from helpers import one_hot, random_classification, softmax_trainer

matplotlib_image = pytest.importorskip("matplotlib.image")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def out(tmp_path):
    """path(name): where a test writes its PNG (FASTBP_PLOTS_DIR if set)."""
    directory = os.environ.get("FASTBP_PLOTS_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
    else:
        directory = str(tmp_path)
    return lambda name: os.path.join(directory, name)


def assert_picture(path, min_width=400, min_height=300, min_colored=0.002):
    """A PNG of a sensible size with a drawing on it (not a blank canvas)."""
    with open(path, "rb") as stream:
        assert stream.read(8) == PNG_MAGIC
    assert 10_000 < os.path.getsize(path) < 2_000_000
    pixels = matplotlib_image.imread(path)[..., :3]
    height, width = pixels.shape[:2]
    assert width >= min_width and height >= min_height
    assert pixels.std() > 0.05
    non_white = np.any(pixels < 0.95, axis=-1).mean()
    assert 0.03 < non_white < 0.6          # lines and text on a white figure
    colored = (pixels.max(axis=-1) - pixels.min(axis=-1) > 0.2).mean()
    assert colored > min_colored            # the curves or bars are in colour
    return pixels


# ------------------------------------------------------------------ learning curves


def overfitting_history():
    X, y = random_classification(seed=3, n_samples=60)
    trainer = softmax_trainer(seed=3, sizes=(8, 40, 3), learning_rate=0.1)
    return trainer.fit(X, y, epochs=60, validation_split=0.3)


def test_learning_curves_with_validation(out):
    history = overfitting_history()
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    path = out("learning_curves.png")
    assert plots.plot_learning_curves(history, path, title="random labels") == path
    pixels = assert_picture(path)
    assert pixels.shape[1] > pixels.shape[0]        # two panels side by side


def test_learning_curves_training_only_and_regression(out, rng):
    X = rng.random((80, 4))
    trainer = softmax_trainer(sizes=(4, 10, 3))
    history = trainer.fit(X, rng.integers(0, 3, 80), epochs=8)
    assert "val_loss" not in history
    assert_picture(plots.plot_learning_curves(history, out("learning_curves_train.png")))

    net = Network([4, 12, 1], output="identity", seed=0)
    regression = Trainer(net, loss="mse", learning_rate=0.05).fit(
        X, X[:, :1] * 2 - 1, epochs=12, validation_split=0.25)
    assert "accuracy" not in regression and "val_loss" in regression
    path = plots.plot_learning_curves(regression, out("learning_curves_regression.png"))
    pixels = assert_picture(path)
    assert pixels.shape[1] < 1.6 * pixels.shape[0]  # one panel, not two


def test_learning_curves_one_epoch_and_path_like(out, tmp_path):
    import pathlib

    X, y = random_classification()
    history = softmax_trainer().fit(X, y, epochs=1, validation_split=0.25)
    path = pathlib.Path(out("learning_curves_one_epoch.png"))
    assert plots.plot_learning_curves(history, path) == str(path)
    assert_picture(path, min_colored=0.0003)        # one point per curve


@pytest.mark.parametrize("history, message", [
    ({}, "no 'loss'"),
    ({"loss": []}, "no 'loss'"),
    ({"loss": [1.0, 0.5], "val_loss": [1.0]}, "has 1 entries"),
    ({"loss": [1.0, "x"]}, "one number per epoch"),
])
def test_learning_curves_refusals(tmp_path, history, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_learning_curves(history, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_learning_curves_refuse_a_non_mapping(tmp_path):
    with pytest.raises(TypeError, match="dict of per-epoch lists"):
        plots.plot_learning_curves([0.5, 0.4], tmp_path / "x.png")


# ------------------------------------------------------------------ gradient norms


def gradient_norm_history(n_epochs=12):
    """A real fit of a deep sigmoid network, epoch by epoch, with history
    ["grad_norms"]: the Trainer's own when it records them, otherwise each
    layer's ||dJ/dW^l|| over the epoch's batches from the NumPy oracle."""
    rng = np.random.default_rng(7)
    X = rng.random((60, 6))
    labels = rng.integers(0, 3, 60)
    Y = one_hot(labels, 3)
    net = Network([6, 16, 16, 16, 16, 3], output="softmax", seed=7)
    trainer = Trainer(net, loss="cross_entropy", learning_rate=0.5, batch_size=10, seed=7)
    history = {}
    for _ in range(n_epochs):
        weights = [W.copy() for W in net.weights]
        biases = [b.copy() for b in net.biases]
        for key, values in trainer.partial_fit(X, labels).items():
            history.setdefault(key, []).extend(values)
        if "grad_norms" in trainer.history:
            continue
        # the norms at the epoch's starting parameters, averaged over batches
        norms = np.zeros(net.n_layers)
        for start in range(0, 60, 10):
            _, grad_w, _ = baseline.loss_and_gradients(
                weights, biases, X[start:start + 10], Y[start:start + 10],
                output="softmax", loss="cross_entropy")
            norms += [np.linalg.norm(G) for G in grad_w]
        history.setdefault("grad_norms", []).append(list(norms / 6))
    assert len(history["grad_norms"]) == n_epochs
    return history


def test_gradient_norms(out):
    history = gradient_norm_history()
    path = out("gradient_norms.png")
    assert plots.plot_gradient_norms(history, path, title="[6, 16, 16, 16, 16, 3] sigmoid") \
        == path
    assert_picture(path)


def test_gradient_norms_many_layers_and_zeros(out):
    # 14 layers (legend in two sizes), a zero and a nan (left out of the log axis)
    norms = [[10.0 ** (-layer / 3) * (1 + 0.1 * epoch) for layer in range(14)]
             for epoch in range(6)]
    norms[2][0] = 0.0
    norms[3][1] = float("nan")
    assert_picture(plots.plot_gradient_norms({"grad_norms": norms},
                                             out("gradient_norms_14.png")))


@pytest.mark.parametrize("history, message", [
    ({"loss": [1.0]}, "no 'grad_norms'"),
    ({"grad_norms": []}, "no 'grad_norms'"),
    ({"grad_norms": [[]]}, "no layers"),
    ({"grad_norms": [[1.0, 2.0], [1.0]]}, "has 1 layers, epoch 1 had 2"),
    ({"grad_norms": [1.0, 2.0]}, "sequence of per-layer numbers"),
    ({"grad_norms": [["a", 1.0]]}, "sequence of per-layer numbers"),
])
def test_gradient_norms_refusals(tmp_path, history, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_gradient_norms(history, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------ benchmark


def report_like(implementations=("fastbp", "baseline", "torch", "roof"),
                dtypes=("float64", "float32")):
    """A report dict with the fields bench/report.py's rows have, from real
    timings of a few updates (the shape of the JSON, not a benchmark)."""
    from time import perf_counter

    rows = []
    workloads = {"nielsen": ([784, 30, 10], 10), "medium": ([784, 128, 64, 10], 64),
                 "large": ([784, 1024, 1024, 10], 256)}
    factor = {"fastbp": 0.2, "baseline": 1.0, "torch": 0.6, "roof": 0.35}
    for dtype in dtypes:
        for index, (name, (sizes, batch)) in enumerate(workloads.items()):
            started = perf_counter()
            sum(range(2000))
            base = perf_counter() - started + 0.01 * (index + 1)
            for implementation in implementations:
                seconds = base * factor[implementation] * (1 + index) ** (
                    0.5 if implementation != "baseline" else 1.0)
                rows.append({"workload": name, "layer_sizes": sizes, "batch_size": batch,
                             "dtype": dtype, "implementation": implementation,
                             "n_samples": 600, "times": [seconds], "seconds": seconds,
                             "speedup": None, "goal": "", "goal_met": None})
    for row in rows:
        base = next(r["seconds"] for r in rows if r["implementation"] == "baseline"
                    and r["workload"] == row["workload"] and r["dtype"] == row["dtype"])
        row["speedup"] = base / row["seconds"]
    return {"date": "2026-01-01T00:00:00+00:00", "machine": {"cpu": "test CPU", "cores": 2},
            "settings": {"n_samples": 600, "repeats": 1}, "epochs": rows}


def test_benchmark_from_dict_and_json(out, tmp_path):
    report = report_like()
    path = out("benchmark.png")
    assert plots.plot_benchmark(report, path) == path
    assert_picture(path)
    json_path = tmp_path / "report.json"
    json_path.write_text(json.dumps(report))
    assert_picture(plots.plot_benchmark(json_path, tmp_path / "from_json.png"))
    assert_picture(plots.plot_benchmark(str(json_path), tmp_path / "from_str.png"))


def test_benchmark_of_the_stored_report(out):
    stored = os.path.join(os.path.dirname(__file__), "..", "bench", "results", "latest.json")
    if not os.path.exists(stored):
        pytest.skip("no bench/results/latest.json")
    assert_picture(plots.plot_benchmark(stored, out("benchmark_latest.png")))


def test_benchmark_one_dtype_without_torch(out):
    report = report_like(implementations=("fastbp", "baseline", "roof"), dtypes=("float32",))
    assert_picture(plots.plot_benchmark(report, out("benchmark_small.png"),
                                        title="float32 only"))


def test_benchmark_speedups_are_baseline_over_seconds():
    report = report_like()
    speedups, workloads, dtypes, others = plots._speedups(report["epochs"])
    assert workloads == ["nielsen", "medium", "large"] and dtypes == ["float64", "float32"]
    assert others == ["fastbp", "torch"]        # fastbp first; the roof, a bound, not drawn
    for row in report["epochs"]:
        key = (row["workload"], row["dtype"], row["implementation"])
        if row["implementation"] == "baseline":
            assert key not in speedups
        else:
            assert speedups[key] == pytest.approx(row["speedup"])


@pytest.mark.parametrize("report, error, message", [
    ({"machine": {}}, ValueError, "no 'epochs' rows"),
    ({"epochs": [{"workload": "nielsen", "dtype": "float64"}]}, ValueError,
     "needs 'workload'"),
    ({"epochs": [{"workload": "w", "dtype": "float64", "implementation": "fastbp",
                  "seconds": 1.0}]}, ValueError, "no implementation timed beside"),
    ([1, 2], TypeError, "benchmark report's dict or the path"),
])
def test_benchmark_refusals(tmp_path, report, error, message):
    with pytest.raises(error, match=message):
        plots.plot_benchmark(report, tmp_path / "x.png")


def test_benchmark_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        plots.plot_benchmark(tmp_path / "missing.json", tmp_path / "x.png")


# ------------------------------------------------------------------ matplotlib


def test_a_clear_import_error_without_matplotlib(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install 'fastbp\[plot\]'"):
        plots.plot_learning_curves({"loss": [1.0, 0.5]}, tmp_path / "x.png")
    with pytest.raises(ImportError, match=r"needs matplotlib"):
        plots.plot_gradient_norms({"grad_norms": [[1.0]]}, tmp_path / "x.png")
    with pytest.raises(ImportError, match=r"needs matplotlib"):
        plots.plot_benchmark(report_like(), tmp_path / "x.png")


def test_threads_draw_at_once(tmp_path):
    history = {"loss": [1.0, 0.6, 0.5, 0.45], "val_loss": [1.1, 0.7, 0.72, 0.8],
               "accuracy": [0.3, 0.5, 0.6, 0.7], "val_accuracy": [0.3, 0.45, 0.5, 0.48]}
    errors = []

    def draw(index):
        try:
            assert_picture(plots.plot_learning_curves(history, tmp_path / f"{index}.png"))
        except BaseException as error:      # noqa: BLE001  (reported below)
            errors.append(error)

    threads = [threading.Thread(target=draw, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_headless_without_pyplot(tmp_path):
    # a GUI backend asked for and no display: the Agg canvas draws anyway,
    # and pyplot (global figure state) is never imported
    script = (
        "import sys\n"
        "from fastbp import plots\n"
        f"plots.plot_learning_curves({{'loss': [1.0, 0.5]}}, {str(tmp_path / 'h.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {key: value for key, value in os.environ.items()
           if key not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["MPLBACKEND"] = "TkAgg"
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    assert_picture(tmp_path / "h.png", min_colored=0.0005)
