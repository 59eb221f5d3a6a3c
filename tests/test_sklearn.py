"""Behaviour of fastbp.sklearn's MLPClassifier and MLPRegressor.

The estimators are drop-in replacements for scikit-learn 1.9's classes of
the same names. With the same parameters and random_state both libraries
draw the same initial weights, shuffle the same way and make the same
early-stopping split, so most tests here fit both and compare the fitted
attributes to a tight tolerance. The rest test what a user does with a
scikit-learn estimator: pipelines, searches, clones, pickles, warm starts,
partial_fit, labels of any kind, sample weights, sparse input, refused
calls, verbose output, hand-set weights, feature names, and accuracy.

scikit-learn's estimator checks (parametrize_with_checks) are in
tests/test_sklearn_checks.py and not repeated here.
"""

import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import neural_network as sk
from sklearn.base import clone
from sklearn.datasets import (load_digits, make_classification, make_multilabel_classification,
                              make_regression)
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import fastbp.sklearn as fbsk
from fastbp.sklearn import MLPClassifier, MLPRegressor

# Most fits here stop at a small max_iter on purpose; the tests that are about
# the ConvergenceWarning catch it with pytest.warns, which sees it regardless.
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RTOL = 1e-9     # float64 fits of both libraries: rounding only
ATOL = 1e-12


# ----------------------------------------------------------------------- data


def _digits():
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


DIGITS_X, DIGITS_Y = _digits()
X_MULTI, Y_MULTI = DIGITS_X[:300], DIGITS_Y[:300]                 # 10 classes, 64 features
X_BIN, Y_BIN = make_classification(n_samples=200, n_features=8, n_informative=5,
                                   random_state=0)
X_LABELS, Y_LABELS = make_multilabel_classification(n_samples=200, n_features=8, n_classes=3,
                                                    random_state=0)
X_LABELS = StandardScaler().fit_transform(X_LABELS)
X_REG, Y_REG = make_regression(n_samples=200, n_features=8, n_informative=6, noise=1.0,
                               random_state=0)
Y_REG = Y_REG / Y_REG.std()
X_MREG, Y_MREG = make_regression(n_samples=200, n_features=8, n_targets=3, noise=1.0,
                                 random_state=1)
Y_MREG = Y_MREG / Y_MREG.std(axis=0)


def _poisson_data():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, (200, 5))
    y = rng.poisson(np.exp(X @ np.array([0.5, -0.3, 0.2, 0.1, 0.4]))).astype(float)
    return X, y


X_POIS, Y_POIS = _poisson_data()


def weights_of(est):
    return [np.array(a) for a in est.coefs_ + est.intercepts_]


def assert_weights_equal(a, b, rtol=RTOL, atol=ATOL):
    assert len(a.coefs_) == len(b.coefs_) and len(a.intercepts_) == len(b.intercepts_)
    for k, (ca, cb) in enumerate(zip(a.coefs_, b.coefs_)):
        assert np.shape(ca) == np.shape(cb), f"coefs_[{k}]"
        assert_allclose(ca, cb, rtol=rtol, atol=atol, err_msg=f"coefs_[{k}]")
    for k, (ia, ib) in enumerate(zip(a.intercepts_, b.intercepts_)):
        assert np.shape(ia) == np.shape(ib), f"intercepts_[{k}]"
        assert_allclose(ia, ib, rtol=rtol, atol=atol, err_msg=f"intercepts_[{k}]")


def assert_same_fit(fb, ref, X, rtol=RTOL, atol=ATOL):
    """fastbp's fit `fb` equals scikit-learn's `ref`: weights, bookkeeping, predictions."""
    assert_weights_equal(fb, ref, rtol, atol)
    assert fb.n_iter_ == ref.n_iter_
    assert fb.t_ == ref.t_
    assert fb.n_layers_ == ref.n_layers_
    assert fb.n_outputs_ == ref.n_outputs_
    assert fb.out_activation_ == ref.out_activation_
    assert fb.n_features_in_ == ref.n_features_in_
    assert_allclose(fb.loss_, ref.loss_, rtol=rtol, atol=atol)
    if ref.solver != "lbfgs":
        assert len(fb.loss_curve_) == len(ref.loss_curve_)
        assert_allclose(fb.loss_curve_, ref.loss_curve_, rtol=rtol, atol=atol)
        if ref.best_loss_ is None:
            assert fb.best_loss_ is None
        else:
            assert_allclose(fb.best_loss_, ref.best_loss_, rtol=rtol, atol=atol)
        if ref.validation_scores_ is None:
            assert fb.validation_scores_ is None
            assert fb.best_validation_score_ is None
        else:
            assert len(fb.validation_scores_) == len(ref.validation_scores_)
            assert_allclose(fb.validation_scores_, ref.validation_scores_, rtol=rtol,
                            atol=atol)
            assert_allclose(fb.best_validation_score_, ref.best_validation_score_,
                            rtol=rtol, atol=atol)
    if hasattr(ref, "classes_"):
        assert_array_equal(fb.classes_, ref.classes_)
        assert_array_equal(fb.predict(X), ref.predict(X))
        assert_allclose(fb.predict_proba(X), ref.predict_proba(X), rtol=rtol, atol=atol)
    else:
        assert_allclose(fb.predict(X), ref.predict(X), rtol=rtol, atol=atol)


def fit_both(fb_cls, sk_cls, X, y, sample_weight=None, **params):
    fb = fb_cls(**params).fit(X, y, sample_weight=sample_weight)
    ref = sk_cls(**params).fit(X, y, sample_weight=sample_weight)
    return fb, ref


# ====================================================== 1. agreement with scikit-learn

CLASSIFIER_CASES = {
    "adam-default": dict(),
    "sgd-nesterov": dict(solver="sgd", learning_rate_init=0.05, momentum=0.9,
                         nesterovs_momentum=True),
    "sgd-momentum": dict(solver="sgd", learning_rate_init=0.05, momentum=0.5,
                         nesterovs_momentum=False),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5,
                           power_t=0.3),
    "batch_size-32": dict(batch_size=32),
    "shuffle-False": dict(shuffle=False, solver="sgd", learning_rate_init=0.05),
    "tanh-two-layers": dict(activation="tanh", hidden_layer_sizes=(12, 7)),
    "logistic-alpha": dict(activation="logistic", alpha=0.1),
}


@pytest.mark.parametrize("case", list(CLASSIFIER_CASES))
def test_classifier_equals_scikit_learn(case):
    params = dict(hidden_layer_sizes=(16,), max_iter=15, random_state=0)
    params.update(CLASSIFIER_CASES[case])
    fb, ref = fit_both(MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI, **params)
    assert fb.n_iter_ == 15
    assert_same_fit(fb, ref, X_MULTI)


def test_classifier_adam_default_architecture_equals_scikit_learn():
    # every default parameter (hidden_layer_sizes=(100,), relu, adam), a few epochs
    fb, ref = fit_both(MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI, random_state=3,
                       max_iter=5)
    assert fb.coefs_[0].shape == (64, 100)
    assert_same_fit(fb, ref, X_MULTI)


def test_sgd_adaptive_equals_scikit_learn_and_the_rate_drops():
    params = dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.5,
                  n_iter_no_change=2, tol=1e-2, hidden_layer_sizes=(16,), max_iter=30,
                  random_state=0)
    fb, ref = fit_both(MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI, **params)
    assert_same_fit(fb, ref, X_MULTI)
    # the rate was divided by 5 (at least once), as in scikit-learn's fit
    assert ref._optimizer.learning_rate <= 0.5 / 5 * (1 + 1e-12)
    assert fb._learning_rate == pytest.approx(ref._optimizer.learning_rate, rel=1e-12)


def test_sgd_adaptive_verbose_reports_the_rate_drop(capsys):
    params = dict(solver="sgd", learning_rate="adaptive", learning_rate_init=0.5,
                  n_iter_no_change=2, tol=1e-2, hidden_layer_sizes=(16,), max_iter=30,
                  random_state=0, verbose=True)
    MLPClassifier(**params).fit(X_MULTI, Y_MULTI)
    assert "Setting learning rate to 0.100000" in capsys.readouterr().out


@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_sgd_stops_on_the_training_loss_like_scikit_learn(est):
    # tol large: the stopping rule ends the fit before max_iter, at the same epoch
    fb_cls, sk_cls, X, y = ((MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI)
                            if est == "classifier" else
                            (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG))
    params = dict(solver="sgd", learning_rate_init=0.05, tol=0.05, n_iter_no_change=2,
                  hidden_layer_sizes=(8,), max_iter=200, random_state=0)
    fb, ref = fit_both(fb_cls, sk_cls, X, y, **params)
    assert ref.n_iter_ < 200
    assert_same_fit(fb, ref, X)


@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_lbfgs_equals_scikit_learn(est):
    fb_cls, sk_cls, X, y = ((MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI)
                            if est == "classifier" else
                            (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG))
    params = dict(solver="lbfgs", hidden_layer_sizes=(16,), max_iter=40, random_state=0,
                  alpha=1e-3)
    fb, ref = fit_both(fb_cls, sk_cls, X, y, **params)
    assert fb.n_iter_ == ref.n_iter_
    assert_same_fit(fb, ref, X, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_lbfgs_converging_before_max_iter_equals_scikit_learn(est):
    # gtol=tol ends the fit well before max_iter, at scikit-learn's iteration
    fb_cls, sk_cls, X, y = ((MLPClassifier, sk.MLPClassifier, X_BIN, Y_BIN)
                            if est == "classifier" else
                            (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG))
    params = dict(solver="lbfgs", hidden_layer_sizes=(4,), activation="tanh", tol=1e-2,
                  max_iter=2000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fb, ref = fit_both(fb_cls, sk_cls, X, y, **params)
    assert ref.n_iter_ < 100
    assert fb.n_iter_ == ref.n_iter_
    assert_same_fit(fb, ref, X, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", ["binary", "multiclass", "regressor"])
def test_early_stopping_equals_scikit_learn(case):
    fb_cls, sk_cls, X, y = {
        "binary": (MLPClassifier, sk.MLPClassifier, X_BIN, Y_BIN),
        "multiclass": (MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI),
        "regressor": (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG),
    }[case]
    params = dict(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3,
                  tol=1e-3, hidden_layer_sizes=(16,), max_iter=60, random_state=0,
                  learning_rate_init=0.01)
    fb, ref = fit_both(fb_cls, sk_cls, X, y, **params)
    assert fb.best_loss_ is None
    assert len(fb.validation_scores_) == fb.n_iter_
    assert fb.t_ == fb.n_iter_ * (X.shape[0] - int(np.ceil(0.2 * X.shape[0])))
    assert_same_fit(fb, ref, X)
    assert fb.best_validation_score_ == max(fb.validation_scores_)


def test_early_stopping_keeps_the_best_epochs_weights():
    # the fit ran on past its best epoch (n_iter_no_change more): the best one is kept
    params = dict(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3,
                  tol=1e-3, hidden_layer_sizes=(16,), max_iter=60, random_state=0,
                  learning_rate_init=0.05)
    fb = MLPRegressor(**params).fit(X_REG, Y_REG)
    assert fb.n_iter_ < 60
    assert int(np.argmax(fb.validation_scores_)) + 1 < fb.n_iter_
    # the validation rows: scikit-learn's split, drawn after the Glorot draws
    rng = np.random.RandomState(0)
    for fan_in, fan_out in ((X_REG.shape[1], 16), (16, 1)):
        rng.uniform(size=(fan_in, fan_out))
        rng.uniform(size=fan_out)
    _, X_val, _, y_val = train_test_split(X_REG, Y_REG, test_size=0.2, random_state=rng)
    assert fb.score(X_val, y_val) == pytest.approx(fb.best_validation_score_, rel=1e-12)
    assert fb.best_validation_score_ > fb.validation_scores_[-1]
    assert_weights_equal(fb, sk.MLPRegressor(**params).fit(X_REG, Y_REG))


def test_multilabel_classifier_equals_scikit_learn():
    params = dict(hidden_layer_sizes=(16,), max_iter=15, random_state=0)
    fb, ref = fit_both(MLPClassifier, sk.MLPClassifier, X_LABELS, Y_LABELS, **params)
    assert fb.out_activation_ == "logistic"
    assert_same_fit(fb, ref, X_LABELS)


def test_multilabel_lbfgs_equals_scikit_learn():
    params = dict(solver="lbfgs", hidden_layer_sizes=(16,), max_iter=30, random_state=0)
    fb, ref = fit_both(MLPClassifier, sk.MLPClassifier, X_LABELS, Y_LABELS, **params)
    assert_same_fit(fb, ref, X_LABELS, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_multioutput_regressor_equals_scikit_learn(solver):
    params = dict(solver=solver, hidden_layer_sizes=(16,), max_iter=20, random_state=0,
                  learning_rate_init=0.01)
    fb, ref = fit_both(MLPRegressor, sk.MLPRegressor, X_MREG, Y_MREG, **params)
    tol = (1e-6, 1e-8) if solver == "lbfgs" else (RTOL, ATOL)
    assert_same_fit(fb, ref, X_MREG, *tol)
    assert fb.predict(X_MREG).shape == (200, 3)


@pytest.mark.parametrize("n_outputs", [1, 3])
def test_squared_error_loss_is_averaged_over_outputs(n_outputs):
    # loss_ of lbfgs is J at the solution: half the mean (over samples and outputs)
    # squared error plus 0.5 alpha ||W||^2 / n, as scikit-learn reports it
    X, Y = (X_REG, Y_REG) if n_outputs == 1 else (X_MREG, Y_MREG)
    alpha = 0.01
    fb = MLPRegressor(solver="lbfgs", hidden_layer_sizes=(8,), max_iter=15, alpha=alpha,
                      random_state=0).fit(X, Y)
    residual = fb.predict(X) - Y
    penalty = 0.5 * alpha * sum(np.sum(np.square(c)) for c in fb.coefs_) / X.shape[0]
    assert fb.loss_ == pytest.approx(0.5 * np.mean(residual ** 2) + penalty, rel=1e-10)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_poisson_equals_scikit_learn(solver):
    params = dict(loss="poisson", solver=solver, hidden_layer_sizes=(8,), max_iter=20,
                  random_state=0, learning_rate_init=0.01)
    fb, ref = fit_both(MLPRegressor, sk.MLPRegressor, X_POIS, Y_POIS, **params)
    assert fb.out_activation_ == "exp"
    tol = (1e-6, 1e-8) if solver == "lbfgs" else (RTOL, ATOL)
    assert_same_fit(fb, ref, X_POIS, *tol)
    assert (fb.predict(X_POIS) > 0).all()


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_sample_weight_equals_scikit_learn(est, solver):
    fb_cls, sk_cls, X, y = ((MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI)
                            if est == "classifier" else
                            (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG))
    weights = np.random.RandomState(1).uniform(0.1, 3.0, X.shape[0])
    params = dict(solver=solver, hidden_layer_sizes=(16,), max_iter=15, random_state=0,
                  alpha=0.01, batch_size=64, learning_rate_init=0.01)
    fb, ref = fit_both(fb_cls, sk_cls, X, y, sample_weight=weights, **params)
    tol = (1e-6, 1e-8) if solver == "lbfgs" else (RTOL, ATOL)
    assert_same_fit(fb, ref, X, *tol)


def test_sample_weight_with_early_stopping_equals_scikit_learn():
    weights = np.random.RandomState(1).uniform(0.1, 3.0, X_MULTI.shape[0])
    params = dict(early_stopping=True, hidden_layer_sizes=(16,), max_iter=20, random_state=0)
    fb, ref = fit_both(MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI,
                       sample_weight=weights, **params)
    assert_same_fit(fb, ref, X_MULTI)


@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_float32_stays_float32_and_agrees_with_scikit_learn(est):
    fb_cls, sk_cls, X, y = ((MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI)
                            if est == "classifier" else
                            (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG))
    X32 = X.astype(np.float32)
    params = dict(hidden_layer_sizes=(16,), max_iter=3, random_state=0,
                  learning_rate_init=0.01)
    fb, ref = fit_both(fb_cls, sk_cls, X32, y, **params)
    for array in fb.coefs_ + fb.intercepts_:
        assert array.dtype == np.float32
    assert_weights_equal(fb, ref, rtol=1e-4, atol=1e-5)
    assert_allclose(fb.loss_curve_, ref.loss_curve_, rtol=1e-5)
    if est == "classifier":
        proba = fb.predict_proba(X32)
        assert proba.dtype == np.float32
        assert_allclose(proba, ref.predict_proba(X32), rtol=1e-4, atol=1e-5)
        assert fb.predict_log_proba(X32).dtype == np.float32
        assert np.mean(fb.predict(X32) == ref.predict(X32)) >= 0.99
    else:
        pred = fb.predict(X32)
        assert pred.dtype == np.float32
        assert_allclose(pred, ref.predict(X32), rtol=1e-4, atol=1e-4)


def test_float64_fit_predicts_float64_from_float32_input():
    fb = MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X_BIN, Y_BIN)
    assert fb.coefs_[0].dtype == np.float64
    assert fb.predict_proba(X_BIN.astype(np.float32)).dtype == np.float64


# ====================================================== 2. scikit-learn's worked example


def test_hand_worked_one_step_example():
    X = np.array([[0.6, 0.8, 0.7]])
    y = np.array([0])
    mlp = MLPClassifier(solver="sgd", learning_rate_init=0.1, alpha=0.1,
                        activation="logistic", random_state=1, max_iter=1,
                        hidden_layer_sizes=2, momentum=0)
    mlp.coefs_ = [np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.0]]), np.array([[0.1], [0.2]])]
    mlp.intercepts_ = [np.array([0.1, 0.1]), np.array([1.0])]
    mlp.n_outputs_ = 1
    mlp.n_features_in_ = 3
    mlp.n_iter_ = 0
    mlp.learning_rate_ = 0.1
    mlp.n_layers_ = 3
    mlp.out_activation_ = "logistic"
    mlp.t_ = 0
    mlp.best_loss_ = np.inf
    mlp.loss_curve_ = []
    mlp._no_improvement_count = 0

    mlp.partial_fit(X, y, classes=[0, 1])

    # one step of 0.1 on the log-loss plus 0.5 * 0.1 * ||W||^2 of the one sample:
    # h = g([0.75, 0.30]) = [0.6792, 0.5744], o = g(1.1828) = 0.7654, the output delta
    # o - 0 = 0.7654, the hidden deltas [0.0167, 0.0374]; each gradient is its delta
    # times the layer's input plus alpha W (biases: the delta alone)
    np.testing.assert_almost_equal(mlp.coefs_[0], [[0.098, 0.195756], [0.2956664, 0.096008],
                                                   [0.4939998, -0.002244]], decimal=3)
    np.testing.assert_almost_equal(mlp.coefs_[1], [[0.04706], [0.154089]], decimal=3)
    np.testing.assert_almost_equal(mlp.intercepts_[0], [0.098333, 0.09626], decimal=3)
    np.testing.assert_almost_equal(mlp.intercepts_[1], [0.9235], decimal=3)
    np.testing.assert_almost_equal(mlp.predict_proba(X)[0, 1], 0.739, decimal=3)
    assert mlp.t_ == 1 and mlp.n_iter_ == 1
    assert_array_equal(mlp.classes_, [0, 1])


def test_hand_worked_example_equals_numpy_step():
    # the same step worked out in NumPy to full precision (not just 3 decimals)
    X = np.array([[0.6, 0.8, 0.7]])
    W1, b1 = np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0.0]]), np.array([0.1, 0.1])
    W2, b2 = np.array([[0.1], [0.2]]), np.array([1.0])
    g = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h = g(X @ W1 + b1)
    o = g(h @ W2 + b2)
    d2 = o - 0.0
    d1 = (d2 @ W2.T) * h * (1 - h)
    expected = [W1 - 0.1 * (X.T @ d1 + 0.1 * W1), W2 - 0.1 * (h.T @ d2 + 0.1 * W2),
                b1 - 0.1 * d1[0], b2 - 0.1 * d2[0]]
    mlp = MLPClassifier(solver="sgd", learning_rate_init=0.1, alpha=0.1, activation="logistic",
                        random_state=1, max_iter=1, hidden_layer_sizes=2, momentum=0)
    mlp.coefs_ = [W1.copy(), W2.copy()]
    mlp.intercepts_ = [b1.copy(), b2.copy()]
    mlp.n_outputs_, mlp.n_features_in_, mlp.n_layers_ = 1, 3, 3
    mlp.out_activation_ = "logistic"
    mlp.partial_fit(X, np.array([0]), classes=[0, 1])
    for got, want in zip(weights_of(mlp), expected):
        assert_allclose(got, want, rtol=1e-13, atol=1e-15)


# ====================================================== 3. scikit-learn's machinery


def test_pipeline_fit_and_score_equal_scikit_learn():
    X_train, X_test, y_train, y_test = train_test_split(X_MULTI, Y_MULTI, test_size=0.3,
                                                        random_state=0, stratify=Y_MULTI)
    params = dict(hidden_layer_sizes=(16,), max_iter=30, random_state=0,
                  learning_rate_init=0.01)
    fb = Pipeline([("scale", StandardScaler()), ("mlp", MLPClassifier(**params))])
    ref = Pipeline([("scale", StandardScaler()), ("mlp", sk.MLPClassifier(**params))])
    fb.fit(X_train, y_train)
    ref.fit(X_train, y_train)
    score = fb.score(X_test, y_test)
    assert score > 0.8
    assert score == ref.score(X_test, y_test)
    assert_same_fit(fb[-1], ref[-1], fb[0].transform(X_test))


def test_grid_search_equals_scikit_learns():
    grid = {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(8,), (16,)]}
    params = dict(max_iter=10, random_state=0)
    fb = GridSearchCV(MLPClassifier(**params), grid, cv=3, error_score="raise")
    ref = GridSearchCV(sk.MLPClassifier(**params), grid, cv=3, error_score="raise")
    fb.fit(X_MULTI, Y_MULTI)
    ref.fit(X_MULTI, Y_MULTI)
    assert_allclose(fb.cv_results_["mean_test_score"], ref.cv_results_["mean_test_score"],
                    rtol=0, atol=1e-12)
    assert fb.best_params_ == ref.best_params_
    assert isinstance(fb.best_estimator_, MLPClassifier)
    assert_same_fit(fb.best_estimator_, ref.best_estimator_, X_MULTI)


def test_cross_val_score_equals_scikit_learns():
    params = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=0)
    fb = cross_val_score(MLPRegressor(**params), X_REG, Y_REG, cv=3)
    ref = cross_val_score(sk.MLPRegressor(**params), X_REG, Y_REG, cv=3)
    assert fb.shape == (3,)
    assert_allclose(fb, ref, rtol=1e-9)


def test_clone_is_unfitted_with_equal_params():
    est = MLPClassifier(hidden_layer_sizes=(8, 4), alpha=0.3, solver="sgd", max_iter=3,
                        random_state=0).fit(X_BIN, Y_BIN)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "coefs_")
    assert not hasattr(copy, "classes_")
    assert not hasattr(copy, "n_features_in_")
    # fitting the clone gives the same fit, and leaves the original alone
    before = weights_of(est)
    copy.fit(X_BIN, Y_BIN)
    assert_weights_equal(copy, est, rtol=0, atol=0)
    copy.partial_fit(X_BIN, Y_BIN)
    for a, b in zip(weights_of(est), before):
        assert_array_equal(a, b)
    # the default parameters are scikit-learn's
    assert MLPClassifier().get_params() == sk.MLPClassifier().get_params()
    assert MLPRegressor().get_params() == sk.MLPRegressor().get_params()


@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_pickle_round_trip(est, solver):
    fb_cls, X, y = ((MLPClassifier, X_MULTI, Y_MULTI) if est == "classifier"
                    else (MLPRegressor, X_MREG, Y_MREG))
    model = fb_cls(solver=solver, hidden_layer_sizes=(100,), max_iter=3, random_state=0,
                   learning_rate_init=0.01).fit(X, y)
    blob = pickle.dumps(model)
    weight_bytes = sum(np.asarray(a).nbytes for a in model.coefs_ + model.intercepts_)
    # the weights, settings and optimizer state (adam: 2 moments; sgd: 1 velocity)
    assert len(blob) < 3 * weight_bytes + 20_000
    restored = pickle.loads(blob)
    assert restored.get_params() == model.get_params()
    assert_weights_equal(restored, model, rtol=0, atol=0)
    assert_array_equal(restored.predict(X), model.predict(X))
    if est == "classifier":
        assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
    # training continues from the same state: the optimizer's too
    for _ in range(2):
        restored.partial_fit(X, y)
        model.partial_fit(X, y)
    assert_weights_equal(restored, model, rtol=0, atol=0)
    assert restored.loss_curve_ == model.loss_curve_
    assert restored.t_ == model.t_
    assert_array_equal(restored.predict(X), model.predict(X))


def test_pickle_of_unfitted_and_lbfgs_estimators():
    unfitted = pickle.loads(pickle.dumps(MLPRegressor(alpha=0.5)))
    assert unfitted.alpha == 0.5 and not hasattr(unfitted, "coefs_")
    model = MLPClassifier(solver="lbfgs", hidden_layer_sizes=(100,), max_iter=10,
                          random_state=0).fit(X_MULTI, Y_MULTI)
    weight_bytes = sum(np.asarray(a).nbytes for a in model.coefs_ + model.intercepts_)
    blob = pickle.dumps(model)
    assert len(blob) < weight_bytes + 20_000
    restored = pickle.loads(blob)
    assert_array_equal(restored.predict_proba(X_MULTI), model.predict_proba(X_MULTI))


def test_pickle_after_partial_fit_equals_scikit_learn():
    params = dict(solver="sgd", hidden_layer_sizes=(16,), random_state=0,
                  learning_rate_init=0.05)
    fb = MLPClassifier(**params)
    ref = sk.MLPClassifier(**params)
    fb.partial_fit(X_MULTI, Y_MULTI, classes=np.arange(10))
    ref.partial_fit(X_MULTI, Y_MULTI, classes=np.arange(10))
    fb = pickle.loads(pickle.dumps(fb))
    ref = pickle.loads(pickle.dumps(ref))
    fb.partial_fit(X_MULTI, Y_MULTI)
    ref.partial_fit(X_MULTI, Y_MULTI)
    assert_same_fit(fb, ref, X_MULTI)


# ====================================================== 4. warm start


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_warm_start_equals_scikit_learn(est, solver):
    fb_cls, sk_cls, X, y = ((MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI)
                            if est == "classifier" else
                            (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG))
    params = dict(solver=solver, warm_start=True, hidden_layer_sizes=(16,), max_iter=5,
                  random_state=0, learning_rate_init=0.01)
    fb, ref = fb_cls(**params), sk_cls(**params)
    fb.fit(X, y)
    ref.fit(X, y)
    first = weights_of(fb)
    fb.fit(X, y)
    ref.fit(X, y)
    tol = (1e-6, 1e-8) if solver == "lbfgs" else (RTOL, ATOL)
    assert_same_fit(fb, ref, X, *tol)
    # it continued: not the first fit's weights, nor a fresh fit's
    fresh = fb_cls(**{**params, "warm_start": False}).fit(X, y)
    assert not np.allclose(weights_of(fb)[0], first[0])
    assert not np.allclose(weights_of(fb)[0], weights_of(fresh)[0])
    if solver != "lbfgs":
        assert len(fb.loss_curve_) == 10
        assert fb.n_iter_ == 5 and fb.t_ == 10 * X.shape[0]


def test_warm_start_with_early_stopping_equals_scikit_learn():
    # the second fit beats the first's best validation score: scikit-learn keeps its best
    params = dict(warm_start=True, early_stopping=True, hidden_layer_sizes=(16,), max_iter=5,
                  random_state=0, learning_rate_init=0.01)
    fb, ref = MLPClassifier(**params), sk.MLPClassifier(**params)
    for _ in range(2):
        fb.fit(X_MULTI, Y_MULTI)
        ref.fit(X_MULTI, Y_MULTI)
    assert len(fb.validation_scores_) == 10
    assert max(fb.validation_scores_[5:]) > max(fb.validation_scores_[:5])
    assert_same_fit(fb, ref, X_MULTI)


def test_warm_start_with_early_stopping_keeps_the_best_weights():
    # the second fit never beats the first's best score, so the first's best weights are
    # kept. (scikit-learn's second fit trains its best weights in place, as coefs_ and
    # its _best_coefs are then the same arrays, and ends at the last epoch's.)
    params = dict(warm_start=True, early_stopping=True, hidden_layer_sizes=(16,), max_iter=5,
                  random_state=0)
    fb, ref = MLPClassifier(**params), sk.MLPClassifier(**params)
    fb.fit(X_MULTI, Y_MULTI)
    ref.fit(X_MULTI, Y_MULTI)
    first = weights_of(fb)
    fb.fit(X_MULTI, Y_MULTI)
    ref.fit(X_MULTI, Y_MULTI)
    assert max(fb.validation_scores_[5:]) <= fb.best_validation_score_
    assert_allclose(fb.loss_curve_, ref.loss_curve_, rtol=RTOL)
    assert_allclose(fb.validation_scores_, ref.validation_scores_, rtol=RTOL)
    assert fb.best_validation_score_ == ref.best_validation_score_
    for a, b in zip(weights_of(fb), first):
        assert_array_equal(a, b)


def test_warm_start_with_different_classes_raises_and_changes_nothing():
    model = MLPClassifier(warm_start=True, hidden_layer_sizes=(8,), max_iter=3,
                          random_state=0).fit(X_MULTI, Y_MULTI)
    before = weights_of(model)
    curve = list(model.loss_curve_)
    y_other = Y_MULTI.copy()
    y_other[y_other == 9] = 8          # class 9 is gone
    with pytest.raises(ValueError, match="warm_start can only be used where `y` has the "
                                         "same classes"):
        model.fit(X_MULTI, y_other)
    y_new = np.where(Y_MULTI == 9, 10, Y_MULTI)    # an unseen class
    with pytest.raises(ValueError, match="warm_start"):
        model.fit(X_MULTI, y_new)
    for a, b in zip(weights_of(model), before):
        assert_array_equal(a, b)
    assert model.loss_curve_ == curve
    assert_array_equal(model.classes_, np.arange(10))


def test_warm_start_with_other_architecture_is_refused():
    model = MLPClassifier(warm_start=True, hidden_layer_sizes=(8,), max_iter=3,
                          random_state=0).fit(X_MULTI, Y_MULTI)
    before = weights_of(model)
    model.set_params(hidden_layer_sizes=(9,))
    with pytest.raises(ValueError):
        model.fit(X_MULTI, Y_MULTI)
    for a, b in zip(weights_of(model), before):
        assert_array_equal(a, b)


# ====================================================== 5. partial_fit


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_partial_fit_calls_equal_fit(est, solver):
    fb_cls, sk_cls, X, y = ((MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI)
                            if est == "classifier" else
                            (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG))
    params = dict(solver=solver, shuffle=False, learning_rate="constant", momentum=0.9,
                  hidden_layer_sizes=(16,), random_state=0, learning_rate_init=0.01,
                  n_iter_no_change=100)
    epochs = 6
    fitted = fb_cls(max_iter=epochs, **params).fit(X, y)
    incremental = fb_cls(**params)
    reference = sk_cls(**params)
    for i in range(epochs):
        kwargs = {"classes": np.unique(y)} if est == "classifier" and i == 0 else {}
        incremental.partial_fit(X, y, **kwargs)
        reference.partial_fit(X, y, **kwargs)
    assert_weights_equal(incremental, fitted, rtol=0, atol=0)
    assert incremental.loss_curve_ == fitted.loss_curve_
    assert incremental.t_ == fitted.t_ == epochs * X.shape[0]
    assert incremental.n_iter_ == 1        # as scikit-learn: the epochs of the last call
    assert_same_fit(incremental, reference, X)


def test_partial_fit_classes_as_scikit_learn():
    # classes may hold labels that y does not; later calls need not repeat them
    params = dict(solver="sgd", hidden_layer_sizes=(8,), random_state=0)
    fb, ref = MLPClassifier(**params), sk.MLPClassifier(**params)
    half = Y_MULTI < 5
    fb.partial_fit(X_MULTI[half], Y_MULTI[half], classes=np.arange(10))
    ref.partial_fit(X_MULTI[half], Y_MULTI[half], classes=np.arange(10))
    fb.partial_fit(X_MULTI[~half], Y_MULTI[~half])
    ref.partial_fit(X_MULTI[~half], Y_MULTI[~half])
    assert_array_equal(fb.classes_, np.arange(10))
    assert_same_fit(fb, ref, X_MULTI)


def test_partial_fit_class_errors():
    model = MLPClassifier(solver="sgd", hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="classes must be passed"):
        model.partial_fit(X_BIN, Y_BIN)
    assert not hasattr(model, "coefs_")
    model.partial_fit(X_BIN, Y_BIN, classes=[0, 1])
    before = weights_of(model)
    with pytest.raises(ValueError, match="is not the same as on last call"):
        model.partial_fit(X_BIN, Y_BIN, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        model.partial_fit(X_BIN, Y_BIN + 1)
    for a, b in zip(weights_of(model), before):
        assert_array_equal(a, b)


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_partial_fit_unavailable_for_lbfgs(cls):
    model = cls(solver="lbfgs")
    assert not hasattr(model, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit") as info:
        model.partial_fit(X_BIN, Y_BIN)
    assert "not stochastic" in str(info.value.__cause__)
    model.set_params(solver="sgd")
    assert hasattr(model, "partial_fit")


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_partial_fit_unavailable_with_early_stopping(cls):
    model = cls(solver="adam", early_stopping=True)
    assert not hasattr(model, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit") as info:
        model.partial_fit(X_BIN, Y_BIN)
    assert "early_stopping" in str(info.value.__cause__)
    model.set_params(early_stopping=False)
    assert hasattr(model, "partial_fit")


def test_partial_fit_after_fit_continues():
    params = dict(solver="sgd", hidden_layer_sizes=(8,), max_iter=4, random_state=0,
                  learning_rate_init=0.05)
    fb, ref = fit_both(MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI, **params)
    fb.partial_fit(X_MULTI, Y_MULTI)
    ref.partial_fit(X_MULTI, Y_MULTI)
    assert len(fb.loss_curve_) == 5
    assert_same_fit(fb, ref, X_MULTI)


# ====================================================== 6. labels and shapes


def test_string_labels():
    y = np.array(["cat", "dog", "bird"])[Y_MULTI % 3]
    model = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0).fit(X_MULTI, y)
    assert_array_equal(model.classes_, ["bird", "cat", "dog"])
    pred = model.predict(X_MULTI)
    assert pred.dtype.kind == "U"
    assert set(pred) <= {"cat", "dog", "bird"}
    assert model.out_activation_ == "softmax"
    proba = model.predict_proba(X_MULTI)
    assert proba.shape == (300, 3)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert_array_equal(pred, model.classes_[np.argmax(proba, axis=1)])
    # the same fit as with integer labels in the same sorted order
    codes = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0).fit(
        X_MULTI, np.searchsorted(["bird", "cat", "dog"], y))
    assert_weights_equal(model, codes, rtol=0, atol=0)
    assert model.score(X_MULTI, y) == codes.score(X_MULTI, np.searchsorted(
        ["bird", "cat", "dog"], y))


def test_binary_string_labels():
    y = np.where(Y_BIN == 1, "yes", "no")
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0,
                          learning_rate_init=0.01).fit(X_BIN, y)
    assert_array_equal(model.classes_, ["no", "yes"])
    assert model.out_activation_ == "logistic"
    assert model.n_outputs_ == 1
    assert model.coefs_[-1].shape == (8, 1)
    proba = model.predict_proba(X_BIN)
    assert proba.shape == (200, 2)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    pred = model.predict(X_BIN)
    assert set(pred) <= {"yes", "no"}
    assert_array_equal(pred, np.where(proba[:, 1] > 0.5, "yes", "no"))
    assert model.score(X_BIN, y) > 0.75


def test_early_stopping_with_string_labels_equals_scikit_learn():
    y = np.array(["cat", "dog", "bird"])[Y_MULTI % 3]
    params = dict(early_stopping=True, hidden_layer_sizes=(8,), max_iter=10, random_state=0)
    fb, ref = fit_both(MLPClassifier, sk.MLPClassifier, X_MULTI, y, **params)
    assert_same_fit(fb, ref, X_MULTI)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_saturated_logistic_probabilities_stay_positive(dtype):
    # a saturated logistic output (|z| = 1000) gives no zero probability: the log is finite
    for X, y in ((X_BIN, Y_BIN), (X_LABELS, Y_LABELS)):
        X = X.astype(dtype)
        model = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
        model.coefs_[-1] = np.zeros(model.coefs_[-1].shape, dtype=dtype)
        model.intercepts_[-1] = np.where(np.arange(model.n_outputs_) % 2, 1000.0,
                                         -1000.0).astype(dtype)
        proba = model.predict_proba(X)
        assert proba.dtype == dtype
        assert ((proba > 0) & (proba <= 1)).all()
        assert np.isfinite(model.predict_log_proba(X)).all()
        if y.ndim == 2:     # labels 0 and 2 off (z = -1000), label 1 on
            assert_array_equal(model.predict(X)[0], [0, 1, 0])
            assert (proba[:, 1] < 1).all()
        else:               # the one output off: class 0
            assert_array_equal(model.predict(X), 0)
            assert_allclose(proba[:, 0], 1.0)


def test_multilabel_indicator_targets():
    model = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0,
                          learning_rate_init=0.01).fit(X_LABELS, Y_LABELS)
    assert model.n_outputs_ == 3
    assert_array_equal(model.classes_, [0, 1, 2])
    pred = model.predict(X_LABELS)
    assert pred.shape == (200, 3)
    assert set(np.unique(pred)) <= {0, 1}
    proba = model.predict_proba(X_LABELS)
    assert proba.shape == (200, 3)
    assert ((proba > 0) & (proba < 1)).all()
    assert_array_equal(pred, (proba > 0.5).astype(pred.dtype))
    assert model.score(X_LABELS, Y_LABELS) > 0.3     # subset accuracy


def test_regressor_shapes():
    single = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X_REG, Y_REG)
    assert single.predict(X_REG).shape == (200,)
    assert single.n_outputs_ == 1
    column = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    with pytest.warns(Warning, match="column-vector y was passed"):
        column.fit(X_REG, Y_REG.reshape(-1, 1))
    assert column.predict(X_REG).shape == (200,)
    assert_weights_equal(column, single, rtol=0, atol=0)
    multi = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X_MREG,
                                                                                Y_MREG)
    assert multi.predict(X_MREG).shape == (200, 3)
    assert multi.n_outputs_ == 3
    assert multi.coefs_[-1].shape == (8, 3)
    assert multi.intercepts_[-1].shape == (3,)
    assert multi.predict(X_MREG[:1]).shape == (1, 3)
    assert single.predict(X_REG[:1]).shape == (1,)


def test_poisson_refuses_negative_targets():
    with pytest.raises(ValueError, match="negative"):
        MLPRegressor(loss="poisson").fit(X_POIS, Y_POIS - 1)


# ====================================================== 7. sample weights


def _full_batch(solver):
    # 'auto' batch size is min(200, n): the whole (150 or fewer) rows in one batch
    return dict(solver=solver, hidden_layer_sizes=(8,), max_iter=15, random_state=0,
                alpha=0.01, learning_rate_init=0.01, batch_size="auto")


@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_zero_weights_equal_removing_rows(est, solver):
    cls, X, y = ((MLPClassifier, X_MULTI[:150], Y_MULTI[:150]) if est == "classifier"
                 else (MLPRegressor, X_REG[:150], Y_REG[:150]))
    keep = np.ones(150, dtype=bool)
    keep[::3] = False
    if est == "classifier":
        assert set(y[keep]) == set(y)     # the same classes either way
    weighted = cls(**_full_batch(solver)).fit(X, y, sample_weight=keep.astype(float))
    removed = cls(**_full_batch(solver)).fit(X[keep], y[keep])
    tol = (1e-6, 1e-9) if solver == "lbfgs" else (1e-10, 1e-13)
    assert_weights_equal(weighted, removed, *tol)
    assert_allclose(weighted.loss_, removed.loss_, rtol=tol[0])
    if solver != "lbfgs":
        assert_allclose(weighted.loss_curve_, removed.loss_curve_, rtol=tol[0])


@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_integer_weights_equal_repeated_rows_lbfgs(est):
    cls, X, y = ((MLPClassifier, X_MULTI[:150], Y_MULTI[:150]) if est == "classifier"
                 else (MLPRegressor, X_REG[:150], Y_REG[:150]))
    counts = np.random.RandomState(0).randint(0, 4, 150)
    if est == "classifier":
        assert set(y[counts > 0]) == set(y)
    weighted = cls(**_full_batch("lbfgs")).fit(X, y, sample_weight=counts)
    repeated = cls(**_full_batch("lbfgs")).fit(np.repeat(X, counts, axis=0),
                                               np.repeat(y, counts))
    assert_weights_equal(weighted, repeated, rtol=1e-6, atol=1e-9)
    assert_allclose(weighted.loss_, repeated.loss_, rtol=1e-8)


@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_unit_weights_equal_no_weights_exactly(est, solver):
    cls, X, y = ((MLPClassifier, X_MULTI, Y_MULTI) if est == "classifier"
                 else (MLPRegressor, X_REG, Y_REG))
    params = dict(solver=solver, hidden_layer_sizes=(8,), max_iter=10, random_state=0,
                  alpha=0.01, batch_size=64)
    plain = cls(**params).fit(X, y)
    ones = cls(**params).fit(X, y, sample_weight=np.ones(X.shape[0]))
    assert_weights_equal(ones, plain, rtol=0, atol=0)
    assert ones.loss_ == plain.loss_
    if solver != "lbfgs":
        assert ones.loss_curve_ == plain.loss_curve_


def test_scaled_weights_equal_a_scaled_alpha_lbfgs():
    # J is a weighted mean plus 0.5 alpha ||W||^2 over the weight sum: weights times 4
    # leave the data term and divide the penalty by 4, as alpha / 4 does
    w = np.random.RandomState(2).uniform(0.5, 2.0, 150)
    params = _full_batch("lbfgs")
    a = MLPRegressor(**params).fit(X_REG[:150], Y_REG[:150], sample_weight=4 * w)
    b = MLPRegressor(**{**params, "alpha": params["alpha"] / 4}).fit(
        X_REG[:150], Y_REG[:150], sample_weight=w)
    assert_weights_equal(a, b, rtol=1e-6, atol=1e-9)
    assert_allclose(a.loss_, b.loss_, rtol=1e-8)


def test_sample_weight_of_wrong_length_is_refused():
    model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X_REG, Y_REG)
    before = weights_of(model)
    with pytest.raises(ValueError):
        model.fit(X_REG, Y_REG, sample_weight=np.ones(10))
    for a, b in zip(weights_of(model), before):
        assert_array_equal(a, b)


# ====================================================== 8. sparse input


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_sparse_equals_dense(est, solver, fmt):
    cls, sk_cls, X, y = ((MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI)
                         if est == "classifier" else
                         (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG))
    if est == "regressor":
        X = np.where(np.abs(X) < 0.8, 0.0, X)     # some zeros to be sparse about
    Xs = sp.csr_matrix(X) if fmt == "csr" else sp.csc_matrix(X)
    assert Xs.nnz < X.size
    params = dict(solver=solver, hidden_layer_sizes=(16,), max_iter=10, random_state=0,
                  batch_size=64)
    dense = cls(**params).fit(X, y)
    sparse = cls(**params).fit(Xs, y)
    tol = (1e-7, 1e-10) if solver == "lbfgs" else (1e-12, 1e-14)
    assert_weights_equal(sparse, dense, *tol)
    assert sparse.n_iter_ == dense.n_iter_
    if solver != "lbfgs":
        assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-12)
    # prediction from sparse input equals prediction from dense input
    assert_allclose(sparse.predict(Xs), sparse.predict(X), rtol=1e-12, atol=1e-14)
    if est == "classifier":
        assert_allclose(sparse.predict_proba(Xs), dense.predict_proba(X), rtol=tol[0],
                        atol=1e-9)
    # and the sparse fit equals scikit-learn's on the same sparse matrix
    ref = sk_cls(**params).fit(Xs, y)
    assert_weights_equal(sparse, ref, *((1e-6, 1e-8) if solver == "lbfgs" else (RTOL, ATOL)))


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_in_several_blocks_equals_dense(monkeypatch, solver):
    # sparse X is densified a block of rows at a time: blocks of 2 batches of 32 rows here
    monkeypatch.setattr(fbsk, "_DENSE_BLOCK_BYTES", 64 * X_MULTI.shape[1] * 8)
    assert fbsk._rows_per_block(X_MULTI.shape[1], 8, 32) == 64
    w = np.random.RandomState(0).uniform(0.2, 3.0, X_MULTI.shape[0])
    params = dict(solver=solver, hidden_layer_sizes=(16,), max_iter=8, random_state=0,
                  batch_size=32, alpha=0.01)
    Xs = sp.csr_matrix(X_MULTI)
    for weights in (None, w):
        sparse = MLPClassifier(**params).fit(Xs, Y_MULTI, sample_weight=weights)
        dense = MLPClassifier(**params).fit(X_MULTI, Y_MULTI, sample_weight=weights)
        ref = sk.MLPClassifier(**params).fit(Xs, Y_MULTI, sample_weight=weights)
        tol = (1e-7, 1e-10) if solver == "lbfgs" else (1e-12, 1e-14)
        assert_weights_equal(sparse, dense, *tol)
        assert_same_fit(sparse, ref, X_MULTI,
                        *((1e-6, 1e-8) if solver == "lbfgs" else (RTOL, ATOL)))
        assert_allclose(sparse.predict_proba(Xs), sparse.predict_proba(X_MULTI), rtol=1e-12,
                        atol=1e-14)


def test_lbfgs_in_several_row_blocks_equals_scikit_learn(monkeypatch):
    # lbfgs's full batch goes to the kernel in row blocks: blocks of 64 of the 300 rows
    monkeypatch.setattr(fbsk, "_LBFGS_BLOCK_ROWS", 64)
    w = np.random.RandomState(0).uniform(0.2, 3.0, X_MULTI.shape[0])
    params = dict(solver="lbfgs", hidden_layer_sizes=(16,), max_iter=20, random_state=0,
                  alpha=0.01)
    for weights in (None, w):
        fb, ref = fit_both(MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI,
                           sample_weight=weights, **params)
        assert_same_fit(fb, ref, X_MULTI, rtol=1e-6, atol=1e-8)


def test_sparse_partial_fit_and_sample_weight():
    Xs = sp.csr_matrix(X_MULTI)
    w = np.random.RandomState(0).uniform(0.5, 2, 300)
    params = dict(solver="sgd", hidden_layer_sizes=(8,), random_state=0)
    a, b = MLPClassifier(**params), MLPClassifier(**params)
    a.partial_fit(Xs, Y_MULTI, sample_weight=w, classes=np.arange(10))
    b.partial_fit(X_MULTI, Y_MULTI, sample_weight=w, classes=np.arange(10))
    assert_weights_equal(a, b, rtol=1e-12, atol=1e-14)


# ====================================================== 9. refused calls


def _state(model):
    return (weights_of(model), model.n_iter_, list(getattr(model, "loss_curve_", [])),
            model.n_features_in_, getattr(model, "t_", None))


def _assert_state(model, state, X, predictions):
    weights, n_iter, curve, n_features, t = state
    for a, b in zip(weights_of(model), weights):
        assert_array_equal(a, b)
    assert model.n_iter_ == n_iter
    assert list(getattr(model, "loss_curve_", [])) == curve
    assert model.n_features_in_ == n_features
    assert getattr(model, "t_", None) == t
    assert_array_equal(model.predict(X), predictions)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_refused_calls_change_nothing(est, solver):
    cls, X, y = ((MLPClassifier, X_MULTI, Y_MULTI) if est == "classifier"
                 else (MLPRegressor, X_REG, Y_REG))
    model = cls(solver=solver, hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    state = _state(model)
    predictions = model.predict(X)

    X_nan = X.copy()
    X_nan[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(X_nan, y)
    _assert_state(model, state, X, predictions)

    X_inf = X.copy()
    X_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        model.fit(X_inf, y)
    _assert_state(model, state, X, predictions)

    # wrong n_features where the fit would continue: warm start and partial_fit
    model.set_params(warm_start=True)
    with pytest.raises(ValueError, match="features"):
        model.fit(X[:, :-1], y)
    _assert_state(model, state, X, predictions)
    if solver != "lbfgs":
        with pytest.raises(ValueError, match="features"):
            model.partial_fit(X[:, :-1], y)
        _assert_state(model, state, X, predictions)
    model.set_params(warm_start=False)

    # invalid parameters
    for name, value in (("alpha", -1.0), ("hidden_layer_sizes", (0,)), ("max_iter", 0),
                        ("activation", "swish"), ("momentum", 2.0)):
        good = model.get_params()[name]
        model.set_params(**{name: value})
        with pytest.raises(ValueError):
            model.fit(X, y)
        model.set_params(**{name: good})
        _assert_state(model, state, X, predictions)
    model.set_params(alpha=-1)
    with pytest.raises(InvalidParameterError, match="alpha"):
        model.fit(X, y)
    model.set_params(alpha=1e-4)
    _assert_state(model, state, X, predictions)

    # wrong length of y
    with pytest.raises(ValueError):
        model.fit(X, y[:-1])
    _assert_state(model, state, X, predictions)

    # predict with the wrong number of features names both counts
    with pytest.raises(ValueError, match=rf"{X.shape[1] - 1} features.*{X.shape[1]} "
                                         rf"features"):
        model.predict(X[:, :-1])
    if est == "classifier":
        with pytest.raises(ValueError, match="features"):
            model.predict_proba(X[:, 1:])
    _assert_state(model, state, X, predictions)


def test_non_finite_solver_result_is_refused_and_changes_nothing():
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(10)
    fresh = MLPRegressor(max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
            fresh.fit(X, y)
    assert not hasattr(fresh, "coefs_")

    model = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(
        rng.uniform(size=(10, 2)), y)
    state = _state(model)
    X_ok = rng.uniform(size=(5, 2))
    predictions = model.predict(X_ok)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match="non-finite"):
            model.partial_fit(X, y)
    _assert_state(model, state, X_ok, predictions)
    # and training goes on from the kept state
    model.partial_fit(X_ok, y[:5])
    assert model.t_ == state[4] + 5


def test_unfitted_predict_raises_not_fitted():
    for model in (MLPClassifier(), MLPRegressor()):
        with pytest.raises(NotFittedError):
            model.predict(X_BIN)
    with pytest.raises(NotFittedError):
        MLPClassifier().predict_proba(X_BIN)


# ====================================================== 10. verbose output, warnings


def test_verbose_prints_scikit_learns_lines(capsys):
    params = dict(solver="sgd", hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                  verbose=True)
    fb = MLPClassifier(**params).fit(X_MULTI, Y_MULTI)
    fb_out = capsys.readouterr().out
    sk.MLPClassifier(**params).fit(X_MULTI, Y_MULTI)
    sk_out = capsys.readouterr().out
    lines = [line for line in fb_out.splitlines() if line.startswith("Iteration")]
    assert len(lines) == 3
    for k, (line, loss) in enumerate(zip(lines, fb.loss_curve_), start=1):
        assert line == f"Iteration {k}, loss = {loss:.8f}"
    assert re.fullmatch(r"Iteration 1, loss = \d\.\d{8}", lines[0])
    assert fb_out == sk_out


def test_verbose_early_stopping_prints_validation_scores(capsys):
    params = dict(early_stopping=True, hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                  verbose=True)
    fb = MLPClassifier(**params).fit(X_MULTI, Y_MULTI)
    out = capsys.readouterr().out
    scores = [line for line in out.splitlines() if line.startswith("Validation score: ")]
    assert len(scores) == 3
    assert scores[0] == f"Validation score: {fb.validation_scores_[0]:f}"
    sk.MLPClassifier(**params).fit(X_MULTI, Y_MULTI)
    assert out == capsys.readouterr().out


def test_verbose_stop_message(capsys):
    params = dict(solver="sgd", tol=10.0, n_iter_no_change=1, hidden_layer_sizes=(8,),
                  max_iter=50, random_state=0, verbose=True)
    fb = MLPRegressor(**params).fit(X_REG, Y_REG)
    out = capsys.readouterr().out
    # epoch 1 sets best_loss_; epochs 2 and 3 do not improve by tol: 2 > n_iter_no_change
    assert fb.n_iter_ == 3
    ref = sk.MLPRegressor(**params).fit(X_REG, Y_REG)
    assert out == capsys.readouterr().out
    assert ref.n_iter_ == 3
    assert ("Training loss did not improve more than tol=10.000000 for 1 consecutive "
            "epochs. Stopping.") in out


def test_verbose_lbfgs_prints_iterations(capsys):
    MLPRegressor(solver="lbfgs", hidden_layer_sizes=(4,), max_iter=3, random_state=0,
                 verbose=True).fit(X_REG, Y_REG)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Iteration 1, loss = ")


def test_quiet_by_default(capsys):
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X_BIN, Y_BIN)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_convergence_warning_at_max_iter(cls, solver):
    X, y = (X_MULTI, Y_MULTI) if cls is MLPClassifier else (X_REG, Y_REG)
    model = cls(solver=solver, hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations|max_iter=2|failed to "
                                                "converge"):
        model.fit(X, y)
    assert model.n_iter_ == 2


def test_no_convergence_warning_when_it_stops_by_tol():
    model = MLPRegressor(solver="sgd", tol=10.0, n_iter_no_change=1, hidden_layer_sizes=(4,),
                         max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        model.fit(X_REG, Y_REG)
    assert model.n_iter_ < 50


def test_batch_size_larger_than_data_warns_and_clips():
    params = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0, batch_size=500)
    with pytest.warns(UserWarning, match="batch_size"):
        fb = MLPRegressor(**params).fit(X_REG, Y_REG)
    with pytest.warns(UserWarning, match="batch_size"):
        ref = sk.MLPRegressor(**params).fit(X_REG, Y_REG)
    assert_same_fit(fb, ref, X_REG)


# ====================================================== 11. user-assigned weights


def _numpy_forward(model, X):
    act = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
           "logistic": lambda z: 1 / (1 + np.exp(-z)), "identity": lambda z: z}
    a = X
    for k, (W, b) in enumerate(zip(model.coefs_, model.intercepts_)):
        z = a @ W + b
        a = act[model.activation](z) if k < len(model.coefs_) - 1 else z
    return a


def test_assigned_weights_are_used_by_predict():
    model = MLPRegressor(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X_MREG,
                                                                                Y_MREG)
    before = model.predict(X_MREG)
    rng = np.random.RandomState(5)
    new_coef = rng.normal(size=(8, 8))
    new_bias = rng.normal(size=8)
    expected = new_coef.copy()
    model.coefs_[0] = new_coef
    model.intercepts_[0] = new_bias
    pred = model.predict(X_MREG)
    assert not np.allclose(pred, before)
    assert_allclose(pred, _numpy_forward(model, X_MREG), rtol=1e-10, atol=1e-12)
    # predicting leaves the assigned arrays in place and untouched
    assert model.coefs_[0] is new_coef
    assert_array_equal(model.coefs_[0], expected)
    # writing into the fitted arrays in place counts too
    model.coefs_[1][...] = 0.0
    model.intercepts_[1][...] = 2.0
    assert_allclose(model.predict(X_MREG), 2.0)


def test_assigned_weights_are_used_by_predict_proba():
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X_MULTI,
                                                                                 Y_MULTI)
    model.intercepts_[1] = np.zeros(10)
    model.coefs_[1] = np.zeros((8, 10))
    assert_allclose(model.predict_proba(X_MULTI), 0.1, rtol=1e-12)


@pytest.mark.parametrize("est", ["classifier", "regressor"])
def test_partial_fit_trains_from_assigned_weights(est):
    fb_cls, sk_cls, X, y = ((MLPClassifier, sk.MLPClassifier, X_MULTI, Y_MULTI)
                            if est == "classifier" else
                            (MLPRegressor, sk.MLPRegressor, X_REG, Y_REG))
    params = dict(solver="sgd", momentum=0.9, hidden_layer_sizes=(8,), max_iter=3,
                  random_state=0, learning_rate_init=0.05)
    fb, ref = fit_both(fb_cls, sk_cls, X, y, **params)
    untouched = fb_cls(**params).fit(X, y)
    rng = np.random.RandomState(7)
    coef0 = rng.uniform(-0.3, 0.3, (X.shape[1], 8))
    bias0 = rng.uniform(-0.3, 0.3, 8)
    coef1 = rng.uniform(-0.3, 0.3, fb.coefs_[1].shape)
    for model in (fb, ref):
        model.coefs_[0] = coef0.copy()
        model.intercepts_[0] = bias0.copy()
        model.coefs_[1] = coef1.copy()
    for model in (fb, ref, untouched):
        model.partial_fit(X, y)
        model.partial_fit(X, y)
    # trained from the assigned arrays: as scikit-learn trains from them
    assert_same_fit(fb, ref, X)
    assert not np.allclose(fb.coefs_[0], untouched.coefs_[0])
    # and training updates what coefs_ holds
    assert not np.allclose(fb.coefs_[0], coef0)
    # an unfitted estimator given those weights by hand trains as the fitted one does
    # (momentum 0: no optimizer state carried over from the fit)
    params0 = {**params, "momentum": 0.0}
    trained = fb_cls(**params0).fit(X, y)
    bias1 = np.array(trained.intercepts_[1])
    trained.coefs_[0] = coef0.copy()
    trained.intercepts_[0] = bias0.copy()
    trained.coefs_[1] = coef1.copy()
    trained.partial_fit(X, y)
    fresh = fb_cls(**params0)
    fresh.coefs_ = [coef0.copy(), coef1.copy()]
    fresh.intercepts_ = [bias0.copy(), bias1]
    fresh.n_outputs_, fresh.n_layers_ = trained.n_outputs_, 3
    fresh.n_features_in_ = X.shape[1]
    fresh.out_activation_ = trained.out_activation_
    kwargs = {"classes": np.unique(y)} if est == "classifier" else {}
    fresh.partial_fit(X, y, **kwargs)
    assert_weights_equal(fresh, trained, rtol=1e-13, atol=1e-15)


def test_assigned_wrong_shape_is_refused_naming_the_layer():
    model = MLPClassifier(solver="sgd", hidden_layer_sizes=(8,), max_iter=3,
                          random_state=0).fit(X_MULTI, Y_MULTI)
    predictions = model.predict(X_MULTI)
    good = weights_of(model)

    def restore():
        model.coefs_[0], model.coefs_[1] = good[0].copy(), good[1].copy()
        model.intercepts_[0], model.intercepts_[1] = good[2].copy(), good[3].copy()

    cases = [
        # the wrong number of outputs (10 classes), with a matching bias
        ([(1, np.zeros((8, 9)))], [(1, np.zeros(9))], r"coefs_\[1\].*n_outputs_=10"),
        # the wrong number of inputs (64 features)
        ([(0, np.zeros((63, 8)))], [], r"coefs_\[0\].*n_features_in_=64"),
        # a hidden width that does not chain into the next layer
        ([(0, np.zeros((64, 7)))], [], r"coefs_\[1\] must have 7 rows"),
        ([(0, np.zeros(64))], [], r"coefs_\[0\] must be 2-D"),
        ([], [(0, np.zeros(7))], r"intercepts_\[0\] must have shape \(8,\)"),
    ]
    for coefs, intercepts, message in cases:
        for k, array in coefs:
            model.coefs_[k] = array
        for k, array in intercepts:
            model.intercepts_[k] = array
        with pytest.raises(ValueError, match=message):
            model.predict(X_MULTI)
        with pytest.raises(ValueError, match=message):
            model.predict_proba(X_MULTI)
        with pytest.raises(ValueError, match=message):
            model.partial_fit(X_MULTI, Y_MULTI)
        restore()
        assert_array_equal(model.predict(X_MULTI), predictions)     # all well again
    # a consistent new hidden width predicts (as in scikit-learn), from those arrays
    model.coefs_ = [np.full((64, 5), 0.01), np.full((5, 10), 0.02)]
    model.intercepts_ = [np.zeros(5), np.arange(10.0)]
    assert_array_equal(model.predict(X_MULTI), 9)


# ====================================================== 12. attributes


def test_feature_names_in_with_a_dataframe():
    columns = [f"f{i}" for i in range(X_BIN.shape[1])]
    frame = pd.DataFrame(X_BIN, columns=columns)
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(frame,
                                                                                 Y_BIN)
    assert_array_equal(model.feature_names_in_, columns)
    assert model.n_features_in_ == 8
    plain = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X_BIN,
                                                                                 Y_BIN)
    assert_weights_equal(model, plain, rtol=0, atol=0)
    assert_array_equal(model.predict(frame), plain.predict(X_BIN))
    with pytest.raises(ValueError, match="feature names should match"):
        model.predict(frame.rename(columns={"f0": "g0"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        model.predict(X_BIN)
    assert not hasattr(plain, "feature_names_in_")
    # a pandas target and a warm start keep them
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0, warm_start=True)
    reg.fit(frame, pd.Series(Y_BIN.astype(float)))
    reg.fit(frame, pd.Series(Y_BIN.astype(float)))
    assert_array_equal(reg.feature_names_in_, columns)


@pytest.mark.parametrize("case, out, n_outputs", [
    ("multiclass", "softmax", 10), ("binary", "logistic", 1), ("multilabel", "logistic", 3),
    ("regression", "identity", 1), ("multioutput", "identity", 3), ("poisson", "exp", 1)])
def test_fitted_attributes(case, out, n_outputs):
    model, X, y = {
        "multiclass": (MLPClassifier(), X_MULTI, Y_MULTI),
        "binary": (MLPClassifier(), X_BIN, Y_BIN),
        "multilabel": (MLPClassifier(), X_LABELS, Y_LABELS),
        "regression": (MLPRegressor(), X_REG, Y_REG),
        "multioutput": (MLPRegressor(), X_MREG, Y_MREG),
        "poisson": (MLPRegressor(loss="poisson"), X_POIS, Y_POIS),
    }[case]
    model.set_params(hidden_layer_sizes=(7, 5), max_iter=2, random_state=0)
    model.fit(X, y)
    assert model.out_activation_ == out
    assert model.n_outputs_ == n_outputs
    assert model.n_layers_ == 4
    assert model.n_features_in_ == X.shape[1]
    assert [c.shape for c in model.coefs_] == [(X.shape[1], 7), (7, 5), (5, n_outputs)]
    assert [b.shape for b in model.intercepts_] == [(7,), (5,), (n_outputs,)]
    assert model.n_iter_ == 2
    assert model.t_ == 2 * X.shape[0]
    assert len(model.loss_curve_) == 2
    assert model.loss_ == model.loss_curve_[-1]
    assert model.best_loss_ == min(model.loss_curve_)
    assert model.validation_scores_ is None and model.best_validation_score_ is None
    ref = getattr(sk, type(model).__name__)(**model.get_params()).fit(X, y)
    assert_same_fit(model, ref, X)


def test_hidden_layer_sizes_as_int_and_list():
    a = MLPClassifier(hidden_layer_sizes=6, max_iter=2, random_state=0).fit(X_BIN, Y_BIN)
    b = MLPClassifier(hidden_layer_sizes=[6], max_iter=2, random_state=0).fit(X_BIN, Y_BIN)
    assert a.n_layers_ == b.n_layers_ == 3
    assert_weights_equal(a, b, rtol=0, atol=0)


# ====================================================== 13. digits accuracy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_digits_accuracy_matches_scikit_learn(seed):
    X_train, X_test, y_train, y_test = train_test_split(DIGITS_X, DIGITS_Y, test_size=0.25,
                                                        stratify=DIGITS_Y, random_state=seed)
    params = dict(hidden_layer_sizes=(32,), max_iter=40, random_state=seed,
                  learning_rate_init=0.003)
    fb = MLPClassifier(**params).fit(X_train, y_train)
    ref = sk.MLPClassifier(**params).fit(X_train, y_train)
    fb_acc, ref_acc = fb.score(X_test, y_test), ref.score(X_test, y_test)
    assert fb_acc > 0.93
    assert abs(fb_acc - ref_acc) <= 0.01
    assert fb_acc == ref_acc     # the same fit: the same predictions
