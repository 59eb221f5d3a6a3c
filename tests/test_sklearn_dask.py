"""fastbp.sklearn on a dask.distributed cluster, through joblib's Dask backend.

The cluster is a real one: with FASTBP_DASK_SCHEDULER set (an address such
as tcp://127.0.0.1:8786, as .ci/run exports it), the scheduler and workers
started outside the test run; otherwise a LocalCluster of 2 worker
processes on loopback, started by the fixture. Proved here:

- a GridSearchCV and a RandomizedSearchCV run under
  ``joblib.parallel_config(backend="dask")`` give the cv_results_ (params,
  split scores, means, ranks) of the same search run locally with n_jobs=1,
  and every fit-and-score of them ran in a worker process: the scheduler's
  task stream holds every call, on the cluster's workers, and a scorer that
  records its process id finds only workers' ids, never the test's;
- each worker has 1 thread, starts with OMP/OPENBLAS/MKL_NUM_THREADS=1, and
  every BLAS library loaded in it (SciPy's, which fastbp's kernels call,
  included) runs on 1 thread, in and out of tasks;
- an estimator fitted on a worker comes back with the weights and
  predictions of the same fit made locally, goes back to a worker to
  predict, continues (partial_fit, optimizer state kept) as the local one
  does, and pickles small: the weights, the optimizer's moments and the
  settings, no buffers.

Locally the comparisons run with BLAS limited to 1 thread too, as on the
workers: fastbp promises the same bits for the same thread count.
"""

import os
import pickle
import re
import sys
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")

import cloudpickle  # noqa: E402  (a dependency of distributed)
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402
from distributed.diagnostics.plugin import WorkerPlugin  # noqa: E402
from scipy.stats import loguniform  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from fastbp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

# Workers started outside this test run (.ci/run's) cannot import this file:
# its functions and classes travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: What each worker process starts with: one thread per BLAS / OpenMP pool
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class LimitBLASThreads(WorkerPlugin):
    """One BLAS (and OpenMP) thread in each worker, whatever its environment said.

    The environment variables only act on libraries loaded after they are
    set; threadpoolctl limits the ones already loaded. fastbp is
    imported first so that SciPy's BLAS, which fastbp's kernels call, is
    among them.
    """

    name = "fastbp-limit-blas-threads"

    def setup(self, worker):
        import fastbp  # noqa: F401  (loads SciPy's BLAS, the one the kernels call)

        threadpool_limits(limits=1)


@pytest.fixture(scope="module")
def client():
    address = os.environ.get("FASTBP_DASK_SCHEDULER")
    with pytest.MonkeyPatch.context() as patch:
        cluster = None
        if address:
            dask_client = Client(address, timeout="30s")
        else:
            # The nanny starts each worker process in this environment (its
            # pre-spawn-environ, which sets the same variables, yields to
            # values already set here); restored when the module is done.
            for name, value in THREAD_ENV.items():
                patch.setenv(name, value)
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None, env=THREAD_ENV)
            dask_client = Client(cluster)
        try:
            dask_client.wait_for_workers(2, timeout=60)
            dask_client.register_plugin(LimitBLASThreads())
            yield dask_client
        finally:
            dask_client.close()
            if cluster is not None:
                cluster.close()


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


def _worker_pids(client):
    pids = set(client.run(os.getpid).values())
    assert len(pids) == len(client.nthreads()) >= 2
    assert os.getpid() not in pids
    return pids


def _pid_scorer(estimator, X, y):
    """A 'score': the id of the process that scores (where the fit just ran)."""
    return float(os.getpid())


def _search(search, X, y):
    """search.fit(X, y) without ConvergenceWarnings (scikit-learn sends the caller's
    warning filters, pytest's "error" included, to each job), and with BLAS on one
    thread here as on the workers: for the jobs of a local search and for the refit
    of the best candidate, which runs here in either case."""
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return search.fit(X, y)


def _assert_same_results(local, remote, metrics):
    results, other = local.cv_results_, remote.cv_results_
    assert results["params"] == other["params"]
    n_splits = local.n_splits_
    for metric in metrics:
        for key in ([f"split{k}_test_{metric}" for k in range(n_splits)]
                    + [f"mean_test_{metric}", f"std_test_{metric}", f"rank_test_{metric}"]):
            np.testing.assert_array_equal(results[key], other[key], err_msg=key)
    assert local.best_params_ == remote.best_params_
    assert local.best_score_ == remote.best_score_


def _calls_on_workers(stream, workers):
    """Calls of _fit_and_score in joblib's batches in the task stream, all on `workers`."""
    calls = 0
    for task in stream.data:
        match = re.match(r"(?:mixed_)?batch_of__fit_and_score_(\d+)_calls", task["key"])
        if match:
            assert task["worker"] in workers
            calls += int(match.group(1))
    return calls


def test_grid_search_on_the_cluster_gives_the_local_cv_results(client, digits):
    X, y = digits
    grid = {"alpha": [1e-4, 1e-1], "hidden_layer_sizes": [(16,), (32,)]}
    estimator = MLPClassifier(max_iter=15, random_state=0)
    local = _search(GridSearchCV(estimator, grid, cv=3, n_jobs=1, error_score="raise"), X, y)
    remote = GridSearchCV(estimator, grid, cv=3, n_jobs=-1, error_score="raise")
    with get_task_stream(client) as stream, joblib.parallel_config(backend="dask"):
        _search(remote, X, y)
    _assert_same_results(local, remote, ["score"])
    # every one of the 4 x 3 fits ran as a task on the cluster's workers
    assert _calls_on_workers(stream, set(client.nthreads())) == 4 * 3
    for a, b in zip(remote.best_estimator_.coefs_, local.best_estimator_.coefs_):
        np.testing.assert_array_equal(a, b)


def test_randomized_search_on_the_cluster_gives_the_local_cv_results(client, digits):
    X, y = digits
    distributions = {"alpha": loguniform(1e-5, 1e-1),
                     "learning_rate_init": loguniform(1e-3, 1e-2)}
    scoring = {"accuracy": "accuracy", "pid": _pid_scorer}

    def search(n_jobs):
        return RandomizedSearchCV(MLPClassifier(hidden_layer_sizes=(16,), max_iter=15,
                                                random_state=0),
                                  distributions, n_iter=4, cv=3, scoring=scoring,
                                  refit="accuracy", random_state=7, n_jobs=n_jobs,
                                  error_score="raise")

    local = _search(search(1), X, y)
    with joblib.parallel_config(backend="dask"):
        remote = _search(search(-1), X, y)
    _assert_same_results(local, remote, ["accuracy"])
    assert len({tuple(sorted(p.items())) for p in remote.cv_results_["params"]}) == 4
    # where each split was fitted and scored: the workers, never this process
    splits = [f"split{k}_test_pid" for k in range(3)]
    remote_pids = {int(pid) for key in splits for pid in remote.cv_results_[key]}
    local_pids = {int(pid) for key in splits for pid in local.cv_results_[key]}
    assert local_pids == {os.getpid()}
    assert remote_pids <= _worker_pids(client)


def _blas_pools():
    """{library path: threads} of the BLAS libraries loaded here, fastbp's included."""
    import fastbp  # noqa: F401  (loads SciPy's BLAS, the one the kernels call)

    return {pool["filepath"]: pool["num_threads"] for pool in threadpool_info()
            if pool["user_api"] == "blas"}


def _threads_here(dask_worker):
    """(worker threads, thread variables, BLAS pools) of the worker process it runs in."""
    return (dask_worker.state.nthreads, {name: os.environ.get(name) for name in THREAD_ENV},
            _blas_pools())


# Tasks (client.submit) call importable functions only: the scheduler unpickles
# a task's function, and it cannot import this file when it was started
# elsewhere (.ci/run's); client.run and plugins go to the workers by value.


def test_each_worker_runs_one_thread_and_one_blas_thread(client):
    import scipy
    import threadpoolctl

    assert set(client.nthreads().values()) == {1}
    # SciPy's BLAS as loaded here (a wheel's: beside scipy in site-packages)
    site = os.path.dirname(os.path.dirname(scipy.__file__))
    scipy_blas = {path for path in _blas_pools()
                  if os.path.relpath(path, site).startswith("scipy")}
    for nthreads, variables, pools in client.run(_threads_here).values():
        assert nthreads == 1
        assert variables == THREAD_ENV
        assert pools and set(pools.values()) == {1}, pools
        assert scipy_blas <= set(pools), (scipy_blas, pools)
    # the same from inside tasks (in a worker's executor thread), on each worker
    for worker in client.nthreads():
        pools = client.submit(threadpoolctl.threadpool_info, pure=False,
                              workers=[worker]).result()
        blas = {pool["filepath"]: pool["num_threads"] for pool in pools
                if pool["user_api"] == "blas"}
        assert scipy_blas <= set(blas) and set(blas.values()) == {1}, blas


def _parameter_bytes(estimator):
    return sum(a.nbytes for a in estimator.coefs_ + estimator.intercepts_)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_a_fit_made_on_a_worker_equals_the_local_fit_and_pickles_small(client, digits,
                                                                       Estimator):
    X, y = digits
    target = y if Estimator is MLPClassifier else y / 9.0
    estimator = Estimator(hidden_layer_sizes=(32,), max_iter=10, random_state=3)
    unfitted_bytes = len(pickle.dumps(estimator))
    assert unfitted_bytes < 2_000

    # fresh keys (no content hashing), so that nothing is shared with another test's
    # futures, which the scheduler may still be releasing
    X_there, target_there = client.scatter([X, target], hash=False)
    with get_task_stream(client) as stream:
        unfitted = client.submit(clone, estimator, pure=False)
        fit = client.submit(Estimator.fit, unfitted, X_there, target_there, pure=False)
        fitted = fit.result()
    ran_on = {task["worker"] for task in stream.data if task["key"] == fit.key}
    assert len(ran_on) == 1 and ran_on <= set(client.nthreads())
    assert os.getpid() not in _worker_pids(client)
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = clone(estimator).fit(X, target)
        for a, b in zip(fitted.coefs_ + fitted.intercepts_, local.coefs_ + local.intercepts_):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(fitted.predict(X), local.predict(X))
        assert fitted.loss_curve_ == local.loss_curve_
        # back to a worker, to predict: from the model kept there, and from the one here
        for model in (fit, fitted):
            np.testing.assert_array_equal(
                client.submit(Estimator.predict, model, X_there, pure=False).result(),
                local.predict(X))
        # the optimizer's state came back too: one more epoch continues alike
        fitted.partial_fit(X, target)
        local.partial_fit(X, target)
        for a, b in zip(fitted.coefs_, local.coefs_):
            np.testing.assert_array_equal(a, b)

    # small: the weights, Adam's two moments of their size, settings (~8 kB), no buffers
    weights = _parameter_bytes(fitted)
    size = len(pickle.dumps(fitted))
    assert weights <= size < 3 * weights + 12_000, (size, weights)
