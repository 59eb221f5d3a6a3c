"""The `fastbp` subcommands (train, predict, evaluate, info, export, bench), end to end.

Every test runs the command in a child process (``sys.executable -m fastbp
...``) on files it writes itself: scikit-learn's wine set (classification,
with a held-out test CSV) and diabetes set (regression), small hand-written
tables for the mistakes, and .npz files. A user's mistake must end with
status 2 and exactly one stderr line, starting ``fastbp: error:``; Ctrl-C
during training with status 130 and no file written.
"""

import csv
import importlib.util
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fastbp import Model, Network

REPOSITORY = Path(__file__).resolve().parent.parent
QUICK = ["--quiet"]


def fastbp(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "fastbp", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def assert_ok(completed):
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    return completed.stdout


def assert_user_error(completed, *fragments):
    """Status 2, one stderr line `fastbp: error: ...` holding each fragment."""
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 2, (completed.returncode, completed.stderr)
    assert "Traceback" not in completed.stderr
    assert len(lines) == 1 and lines[0].startswith("fastbp: error: "), completed.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def write_csv(path, header, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def split_dataset(loader, stratify):
    from sklearn.model_selection import train_test_split

    data = loader()
    return data, train_test_split(data.data, data.target, test_size=0.2, random_state=0,
                                  stratify=data.target if stratify else None)


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    """wine_train.csv and wine_test.csv (13 features, column 'cultivar' last) and the test labels."""
    from sklearn.datasets import load_wine

    folder = tmp_path_factory.mktemp("wine")
    data, (X_train, X_test, y_train, y_test) = split_dataset(load_wine, stratify=True)
    header = [*data.feature_names, "cultivar"]
    for name, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        write_csv(folder / f"wine_{name}.csv", header,
                  [[repr(float(v)) for v in row] + [int(label)] for row, label in zip(X, y)])
    return folder, y_test


@pytest.fixture(scope="module")
def wine_model(wine):
    folder, _ = wine
    model = folder / "wine.npz"
    completed = fastbp("train", folder / "wine_train.csv", "--model", model, "--seed", "1")
    assert_ok(completed)
    return model, completed


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory):
    from sklearn.datasets import load_diabetes

    folder = tmp_path_factory.mktemp("diabetes")
    data, (X_train, X_test, y_train, y_test) = split_dataset(load_diabetes, stratify=False)
    header = [*data.feature_names, "progression"]
    for name, X, y in (("train", X_train, y_train), ("test", X_test, y_test)):
        write_csv(folder / f"diabetes_{name}.csv", header,
                  [[repr(float(v)) for v in row] + [repr(float(t))] for row, t in zip(X, y)])
    return folder, y_train, y_test


def read_predictions(path_or_text):
    text = Path(path_or_text).read_text() if isinstance(path_or_text, Path) else path_or_text
    rows = list(csv.reader(text.splitlines()))
    return rows[0], rows[1:]


# ------------------------------------------------------------------- wine

def test_wine_train_predict_evaluate_info(wine, wine_model):
    folder, y_test = wine
    model, completed = wine_model

    # train: one summary line on stdout, the progress bar on stderr
    summary = completed.stdout.strip().splitlines()
    assert len(summary) == 1, completed.stdout
    assert re.match(r"trained \d+ epochs in \d+\.\d+ s.*: train loss \d\.\d+, accuracy "
                    r"\d\.\d+; validation loss \d\.\d+, accuracy \d\.\d+; wrote ", summary[0])
    assert "epoch" in completed.stderr              # tqdm's bar
    assert model.exists()

    # predict into a file and to stdout: the same table, one label per test row
    out = folder / "predictions.csv"
    assert_ok(fastbp("predict", model, folder / "wine_test.csv", "--out", out))
    header, rows = read_predictions(out)
    assert header == ["prediction"] and len(rows) == len(y_test)
    predicted = np.array([int(row[0]) for row in rows])
    assert np.mean(predicted == y_test) >= 0.9
    stdout = assert_ok(fastbp("predict", model, folder / "wine_test.csv"))
    assert stdout == out.read_text()

    # evaluate: the same accuracy, and a confusion matrix over the 36 rows
    report = assert_ok(fastbp("evaluate", model, folder / "wine_test.csv"))
    accuracy = float(re.search(r"^accuracy (\d\.\d+)", report, re.M).group(1))
    assert accuracy >= 0.9
    assert accuracy == pytest.approx(np.mean(predicted == y_test), abs=1e-4)
    assert re.search(r"^loss \d\.\d+ \(cross-entropy\)", report, re.M)
    matrix = report.split("confusion matrix")[1].splitlines()[2:5]
    counts = np.array([[int(cell) for cell in line.split()[1:]] for line in matrix])
    assert counts.shape == (3, 3) and counts.sum() == len(y_test)
    assert np.trace(counts) == round(accuracy * len(y_test))

    info = assert_ok(fastbp("info", model))
    assert "version 2" in info
    assert "task: classify, 3 classes: 0, 1, 2" in info
    assert "[13, 100, 3]" in info and "relu" in info and "softmax" in info
    assert "float64" in info and "alcohol" in info
    assert "inputs standardised" in info
    assert re.search(r"training: \d+ epochs", info)


def test_wine_probabilities(wine, wine_model):
    folder, y_test = wine
    model, _ = wine_model
    header, rows = read_predictions(
        assert_ok(fastbp("predict", model, folder / "wine_test.csv", "--proba")))
    assert header == ["0", "1", "2"]
    probabilities = np.array(rows, dtype=float)
    assert probabilities.shape == (len(y_test), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    _, labels = read_predictions(assert_ok(fastbp("predict", model, folder / "wine_test.csv")))
    np.testing.assert_array_equal(probabilities.argmax(axis=1), [int(r[0]) for r in labels])


def test_model_file_holds_the_preprocessing(wine, wine_model):
    folder, _ = wine
    model = Model.load(wine_model[0])
    train = np.loadtxt(folder / "wine_train.csv", delimiter=",", skiprows=1)
    assert model.task == "classify"
    assert model.classes.tolist() == [0, 1, 2]
    assert model.feature_names[0] == "alcohol" and len(model.feature_names) == 13
    # fitted on the training rows left after the validation split: near the whole file's
    np.testing.assert_allclose(model.feature_mean, train[:, :-1].mean(axis=0), rtol=0.1)
    assert model.target_mean is None
    assert model.history["loss"] and model.history["val_loss"]


def test_string_labels_come_back_and_the_target_column_is_ignored(wine, tmp_path):
    folder, y_test = wine
    names = np.array(["barolo", "grignolino", "barbera"])
    for part in ("train", "test"):
        with open(folder / f"wine_{part}.csv", newline="") as stream:
            rows = list(csv.reader(stream))
        # the label first, to show that --target picks any column
        write_csv(tmp_path / f"{part}.csv", ["kind", *rows[0][:-1]],
                  [[names[int(row[-1])], *row[:-1]] for row in rows[1:]])
    model = tmp_path / "kinds.npz"
    assert_ok(fastbp("train", tmp_path / "train.csv", "--target", "kind", "--model", model,
                     *QUICK))
    # the test file still has its 'kind' column: predict leaves it out
    _, rows = read_predictions(assert_ok(fastbp("predict", model, tmp_path / "test.csv")))
    predicted = np.array([row[0] for row in rows])
    assert set(predicted) <= set(names)
    assert np.mean(predicted == names[y_test]) >= 0.9
    report = assert_ok(fastbp("evaluate", model, tmp_path / "test.csv", "--target", "kind"))
    assert "barbera" in report and "grignolino" in report
    assert "3 classes: barbera, barolo, grignolino" in assert_ok(fastbp("info", model))


def test_two_classes_get_one_sigmoid_output(wine, tmp_path):
    folder, _ = wine
    with open(folder / "wine_train.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    two = [row for row in rows[1:] if row[-1] in ("0", "1")]
    write_csv(tmp_path / "two.csv", rows[0], two)
    model = tmp_path / "two.npz"
    assert_ok(fastbp("train", tmp_path / "two.csv", "--model", model, *QUICK))
    assert Model.load(model).network.layer_sizes[-1] == 1
    header, probabilities = read_predictions(
        assert_ok(fastbp("predict", model, tmp_path / "two.csv", "--proba")))
    assert header == ["0", "1"]
    report = assert_ok(fastbp("evaluate", model, tmp_path / "two.csv"))
    assert float(re.search(r"^accuracy (\d\.\d+)", report, re.M).group(1)) >= 0.9


def test_training_options(wine, tmp_path):
    folder, _ = wine
    model, curve = tmp_path / "m.npz", tmp_path / "curve.png"
    stdout = assert_ok(fastbp(
        "train", folder / "wine_train.csv", "--model", model, "--hidden", "20,10",
        "--activation", "tanh", "--optimizer", "sgd", "--learning-rate", "0.05",
        "--batch-size", "16", "--epochs", "7", "--l2", "0", "--validation-split", "0",
        "--dtype", "float32", "--seed", "3", "--no-scale", "--curve", curve, "--quiet"))
    assert "trained 7 epochs" in stdout and "validation" not in stdout
    loaded = Model.load(model)
    assert loaded.network.layer_sizes == [13, 20, 10, 3]
    assert loaded.network.activation == "tanh" and loaded.network.dtype == np.float32
    assert loaded.feature_mean is None
    assert "inputs used as given" in assert_ok(fastbp("info", model))
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_model(wine, tmp_path):
    folder, _ = wine
    for name in ("a.npz", "b.npz"):
        assert_ok(fastbp("train", folder / "wine_train.csv", "--model", tmp_path / name,
                         "--epochs", "5", *QUICK))
    a, b = Model.load(tmp_path / "a.npz"), Model.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.network.get_parameters(), b.network.get_parameters())


# ------------------------------------------------------------- regression

def test_diabetes_regression(diabetes):
    folder, y_train, y_test = diabetes
    model = folder / "diabetes.npz"
    stdout = assert_ok(fastbp("train", folder / "diabetes_train.csv", "--model", model,
                              "--hidden", "10", *QUICK))
    assert re.search(r"train loss \d\.\d+, R\^2 0\.\d+; validation loss", stdout)
    loaded = Model.load(model)
    assert loaded.task == "regress" and loaded.network.output == "identity"
    # the targets (about 25..346) are standardised inside the model
    assert float(loaded.target_mean) == pytest.approx(y_train.mean(), rel=0.1)
    assert float(loaded.target_scale) == pytest.approx(y_train.std(), rel=0.1)

    report = assert_ok(fastbp("evaluate", model, folder / "diabetes_test.csv"))
    r2 = float(re.search(r"^R\^2 (-?\d\.\d+)", report, re.M).group(1))
    assert r2 >= 0.25          # least squares reaches 0.33 on this split
    assert "RMSE" in report and "mse on standardised targets" in report

    _, rows = read_predictions(assert_ok(fastbp("predict", model, folder / "diabetes_test.csv")))
    predicted = np.array([float(row[0]) for row in rows])
    assert len(predicted) == len(y_test)
    assert 25 < predicted.mean() < 350            # in the targets' units, not standardised
    residual = np.sum((y_test - predicted) ** 2)
    assert 1 - residual / np.sum((y_test - y_test.mean()) ** 2) == pytest.approx(r2, abs=1e-3)
    info = assert_ok(fastbp("info", model))
    assert "task: regress" in info and "targets standardised" in info


def test_default_task_by_labels(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    write_csv(tmp_path / "ints.csv", ["a", "b", "c", "y"],
              [[*row, int(row[0] > 0)] for row in X])
    write_csv(tmp_path / "many.csv", ["a", "b", "c", "y"],
              [[*row, int(100 * row[1])] for row in X])
    for name, task in (("ints", "classify"), ("many", "regress")):
        assert_ok(fastbp("train", tmp_path / f"{name}.csv", "--model", tmp_path / "m.npz",
                         "--epochs", "2", *QUICK))
        assert Model.load(tmp_path / "m.npz").task == task
    assert_ok(fastbp("train", tmp_path / "ints.csv", "--model", tmp_path / "m.npz",
                     "--epochs", "2", "--task", "regress", *QUICK))
    assert Model.load(tmp_path / "m.npz").task == "regress"


# ------------------------------------------------------- npz, digits, v1

def test_npz_data_and_digits(tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.savez(tmp_path / "digits.npz", X=digits.data, y=digits.target)
    model = tmp_path / "m.npz"
    assert_ok(fastbp("train", tmp_path / "digits.npz", "--model", model, "--epochs", "5",
                     *QUICK))
    assert Model.load(model).feature_names is None
    _, rows = read_predictions(assert_ok(fastbp("predict", model, tmp_path / "digits.npz")))
    assert np.mean(np.array([int(r[0]) for r in rows]) == digits.target) > 0.9

    assert_ok(fastbp("train", "digits", "--model", model, "--epochs", "3", *QUICK))
    assert Model.load(model).feature_names[:2] == ["pixel_0_0", "pixel_0_1"]
    report = assert_ok(fastbp("evaluate", model, "digits"))
    assert "1797 rows" in report
    assert float(re.search(r"^accuracy (\d\.\d+)", report, re.M).group(1)) > 0.9


def test_version_1_model_file(tmp_path):
    net = Network([3, 4, 2], output="softmax", seed=0)
    net.save(tmp_path / "v1.npz")
    info = assert_ok(fastbp("info", tmp_path / "v1.npz"))
    assert "version 1" in info and "features: 3, unnamed" in info
    write_csv(tmp_path / "x.csv", ["p", "q", "r"], [[0.1, 0.2, 0.3], [1, 2, 3]])
    header, rows = read_predictions(assert_ok(fastbp("predict", tmp_path / "v1.npz",
                                                     tmp_path / "x.csv")))
    assert header == ["prediction"]
    assert [int(r[0]) for r in rows] == net.predict(np.array([[0.1, 0.2, 0.3], [1, 2, 3]])).tolist()


def test_demo_stays_the_default():
    for args in (["demo", "--epochs", "2"], ["--epochs", "2"]):
        stdout = assert_ok(fastbp(*args))
        assert "final test accuracy" in stdout and "[64, 30, 10]" in stdout
    assert "train" in assert_ok(fastbp("--help"))


# ---------------------------------------------------------------- mistakes

@pytest.fixture(scope="module")
def tables(tmp_path_factory, wine_model):
    """Small tables with one defect each, and a model without feature names."""
    folder = tmp_path_factory.mktemp("tables")
    write_csv(folder / "ok.csv", ["a", "b", "y"], [[1, 2, 0], [2, 1, 1], [3, 3, 0], [0, 1, 1]])
    write_csv(folder / "text.csv", ["a", "colour", "y"], [[1, 2, 0], [2, "red", 1], [3, 3, 0]])
    write_csv(folder / "empty_cell.csv", ["a", "b", "y"], [[1, "", 0], [2, 1, 1]])
    write_csv(folder / "nan.csv", ["a", "b", "y"], [[1, "nan", 0], [2, 1, 1]])
    write_csv(folder / "one_row.csv", ["a", "b", "y"], [[1, 2, 0]])
    write_csv(folder / "two_rows.csv", ["a", "b", "y"], [[1, 2, 0], [2, 1, 1]])
    write_csv(folder / "header_only.csv", ["a", "b", "y"], [])
    write_csv(folder / "one_class.csv", ["a", "b", "y"], [[1, 2, 0], [2, 1, 0], [3, 3, 0]])
    write_csv(folder / "ragged.csv", ["a", "b", "y"], [[1, 2, 0], [2, 1]])
    write_csv(folder / "three.csv", ["a", "b", "c"], [[1, 2, 3]])
    write_csv(folder / "other_names.csv", ["p", "q"], [[1, 2]])
    write_csv(folder / "new_label.csv", ["a", "b", "y"], [[1, 2, 0], [2, 1, 7]])
    (folder / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (folder / "truncated.npz").write_bytes(wine_model[0].read_bytes()[:300])
    np.savez(folder / "ab.npz", X=np.array([[1.0, 2], [2, 1], [3, 3], [0, 1]]), y=[0, 1, 0, 1])
    np.savez(folder / "no_x.npz", features=np.zeros((3, 2)))
    assert_ok(fastbp("train", folder / "ab.npz", "--model", folder / "ab_model.npz",
                     "--validation-split", "0", "--epochs", "1", *QUICK))
    assert_ok(fastbp("train", folder / "ok.csv", "--model", folder / "ok_model.npz",
                     "--validation-split", "0", "--epochs", "1", *QUICK))
    return folder


WINE = "{wine}/wine_train.csv"
MISTAKES = {
    # missing or unreadable files
    "missing-data": (["train", "{t}/nope.csv", "--model", "{t}/m.npz"], ["nope.csv", "no such file"]),
    "missing-model": (["predict", "{t}/nope.npz", "{t}/ok.csv"], ["nope.npz", "no such file"]),
    "missing-predict-data": (["predict", "{t}/ok_model.npz", "{t}/nope.csv"], ["no such file"]),
    "binary-csv": (["train", "{t}/binary.csv", "--model", "{t}/m.npz"], ["binary.csv"]),
    "directory-data": (["train", "{t}", "--model", "{t}/m.npz"], ["directory"]),
    "truncated-model": (["info", "{t}/truncated.npz"], ["truncated.npz"]),
    "csv-as-model": (["evaluate", "{t}/ok.csv", "{t}/ok.csv"], ["not a fastbp model file"]),
    "npz-without-X": (["train", "{t}/no_x.npz", "--model", "{t}/m.npz"], ["no array 'X'"]),
    "ragged-csv": (["train", "{t}/ragged.csv", "--model", "{t}/m.npz"], ["row 3 has 2 fields"]),
    "no-output-directory": (["train", "{t}/ok.csv", "--model", "{t}/no/such/m.npz"],
                            ["does not exist"]),
    # columns
    "unknown-target": (["train", "{t}/ok.csv", "--target", "z", "--model", "{t}/m.npz"],
                       ["no column 'z'"]),
    "unknown-evaluate-target": (["evaluate", "{t}/ok_model.npz", "{t}/ok.csv", "--target", "q"],
                                ["no column 'q'"]),
    "non-numeric-feature": (["train", "{t}/text.csv", "--model", "{t}/m.npz"],
                            ["'colour'", "not numeric", "row 3", "'red'"]),
    "empty-cell": (["train", "{t}/empty_cell.csv", "--model", "{t}/m.npz"], ["'b'", "empty"]),
    "nan-feature": (["train", "{t}/nan.csv", "--model", "{t}/m.npz"], ["'b'", "finite"]),
    "regress-on-text": (["train", "{t}/text.csv", "--target", "colour", "--task", "regress",
                         "--model", "{t}/m.npz"], ["'colour'", "not numeric"]),
    # rows
    "one-row": (["train", "{t}/one_row.csv", "--model", "{t}/m.npz"], ["too few rows"]),
    "no-rows": (["train", "{t}/header_only.csv", "--model", "{t}/m.npz"], ["no data rows"]),
    # a class of one row gives none to the stratified validation split
    "split-too-small": (["train", "{t}/two_rows.csv", "--model", "{t}/m.npz"],
                        ["too few rows", "--validation-split 0"]),
    "one-class": (["train", "{t}/one_class.csv", "--model", "{t}/m.npz"], ["one class"]),
    # the model and the data disagree
    "feature-count": (["predict", "{t}/ab_model.npz", "{t}/three.csv"],
                      ["3 feature columns", "expects 2"]),
    "feature-count-npz": (["predict", "{wine}/wine.npz", "{t}/ab.npz"],
                          ["2 feature columns", "expects 13"]),
    "missing-feature-columns": (["predict", "{t}/ok_model.npz", "{t}/other_names.csv"],
                                ["lacks the model's feature columns a, b"]),
    "unknown-label": (["evaluate", "{t}/ok_model.npz", "{t}/new_label.csv"], ["[7]"]),
    "proba-of-regressor": ([], ["--proba needs a classifier"]),     # the model: in the test
    # bad option values
    "epochs-zero": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--epochs", "0"],
                    ["--epochs"]),
    "epochs-text": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--epochs", "many"],
                    ["--epochs"]),
    "hidden": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--hidden", "10,x"],
               ["--hidden"]),
    "hidden-zero": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--hidden", "0"],
                    ["--hidden"]),
    "learning-rate": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--learning-rate", "-1"],
                      ["--learning-rate"]),
    "learning-rate-nan": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--learning-rate",
                           "nan"], ["--learning-rate"]),
    "validation-split": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--validation-split",
                          "1.5"], ["--validation-split"]),
    "activation": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--activation", "swish"],
                   ["--activation"]),
    "dtype": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--dtype", "float16"],
              ["--dtype"]),
    "task": (["train", "{t}/ok.csv", "--model", "{t}/m.npz", "--task", "cluster"], ["--task"]),
    "patience-without-split": (["train", "{t}/ok.csv", "--model", "{t}/m.npz",
                                "--validation-split", "0", "--patience", "3"], ["--patience"]),
    "target-for-npz": (["train", "{t}/ab.npz", "--target", "y", "--model", "{t}/m.npz"],
                       ["--target"]),
    "no-model-option": (["train", "{t}/ok.csv"], ["--model"]),
    "unknown-option": (["predict", "{t}/ok_model.npz", "{t}/ok.csv", "--colour"],
                       ["--colour"]),
    "bench-outside-checkout": (["bench"], ["source", "bench/report.py"]),
}


@pytest.mark.parametrize("name", list(MISTAKES))
def test_user_mistakes(name, tables, wine, tmp_path):
    args, fragments = MISTAKES[name]
    if name == "proba-of-regressor":
        assert_ok(fastbp("train", tables / "ok.csv", "--model", tmp_path / "r.npz",
                         "--task", "regress", "--validation-split", "0", "--epochs", "1",
                         *QUICK))
        args = ["predict", str(tmp_path / "r.npz"), "{t}/ok.csv", "--proba"]
    args = [arg.format(t=tables, wine=wine[0]) for arg in args]
    completed = fastbp(*args, cwd=tmp_path)        # tmp_path: no bench/ there
    assert_user_error(completed, *fragments)
    assert not (tables / "m.npz").exists()
    assert not list(tables.glob(".fastbp-*"))


# ------------------------------------------------------------------ Ctrl-C

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGINT to a child: Linux")
def test_ctrl_c_during_train_writes_nothing(tmp_path):
    model = tmp_path / "model.npz"
    child = subprocess.Popen(
        [sys.executable, "-m", "fastbp", "train", "digits", "--model", str(model),
         "--epochs", "100000", "--patience", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        # tqdm draws its bar as the fit begins: training has started
        seen = b""
        deadline = time.monotonic() + 60
        while b"epoch" not in seen and time.monotonic() < deadline:
            seen += os.read(child.stderr.fileno(), 4096)
        assert b"epoch" in seen
        time.sleep(0.5)                         # well into the epochs
        assert child.poll() is None
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = (seen + stderr).decode()
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.rstrip().splitlines()[-1].endswith("fastbp: interrupted; nothing was saved")
    assert stdout == b""
    assert list(tmp_path.iterdir()) == []       # no model, no temporary file


# ---------------------------------------------------------- export, bench

STUB_EXPORT = textwrap.dedent("""
    import sys, types
    stub = types.ModuleType("fastbp._onnx")

    def export_onnx(model, path):
        with open(path, "w") as stream:
            stream.write(f"{type(model).__name__} {model.network.layer_sizes}")

    stub.export_onnx = export_onnx
    sys.modules["fastbp._onnx"] = None if sys.argv[1] == "absent" else stub
    from fastbp.__main__ import main
    sys.exit(main(sys.argv[2:]))
""")


def test_export_calls_export_onnx(wine_model, tmp_path):
    # fastbp._onnx is written in parallel: a stand-in records what the command hands it
    out = tmp_path / "wine.onnx"
    completed = subprocess.run(
        [sys.executable, "-c", STUB_EXPORT, "stub", "export", str(wine_model[0]), str(out)],
        capture_output=True, text=True, timeout=60)
    assert_ok(completed)
    assert out.read_text() == "Model [13, 100, 3]"
    assert f"wrote {out}" in completed.stdout


def test_export_without_the_onnx_module(wine_model, tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", STUB_EXPORT, "absent", "export", str(wine_model[0]),
         str(tmp_path / "x.onnx")], capture_output=True, text=True, timeout=60)
    assert_user_error(completed, "ONNX export is not available")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.skipif(importlib.util.find_spec("fastbp._onnx") is None,
                    reason="fastbp._onnx is not in this build yet")
def test_export_for_real(wine_model, tmp_path):
    out = tmp_path / "wine.onnx"
    completed = fastbp("export", wine_model[0], out)
    if completed.returncode == 2 and importlib.util.find_spec("onnx") is None:
        pytest.skip("the onnx package is not installed")
    assert_ok(completed)
    assert out.stat().st_size > 0


def test_bench_runs_the_report_of_the_checkout(tmp_path):
    # a stand-in checkout: bench/report.py that records its arguments
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "report.py").write_text(
        "import sys\nopen('argv.txt', 'w').write(' '.join(sys.argv[1:]))\nsys.exit(3)\n")
    completed = fastbp("bench", "--quick", cwd=tmp_path)
    assert completed.returncode == 3            # the report's own status
    recorded = (tmp_path / "argv.txt").read_text()
    assert recorded.startswith("--samples 2000 --repeats 2 --no-torch --json ")
    completed = fastbp("bench", cwd=tmp_path)
    assert completed.returncode == 3 and (tmp_path / "argv.txt").read_text() == ""


def test_bench_quick_in_the_checkout():
    # the real quick report of this checkout (5-25 s): the suite runs from it
    results = REPOSITORY / "bench" / "results" / "latest.json"
    before = results.read_bytes() if results.exists() else None
    completed = fastbp("bench", "--quick", cwd=REPOSITORY, timeout=300)
    assert_ok(completed)
    assert "fastbp" in completed.stdout and "baseline" in completed.stdout
    # a smoke run leaves the checkout's recorded results alone
    assert (results.read_bytes() if results.exists() else None) == before
