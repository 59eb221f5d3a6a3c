"""scikit-learn's own estimator checks over fastbp.sklearn's estimators.

Every check of ``parametrize_with_checks`` runs in several configurations:
each solver, early stopping on, the Poisson loss. The only checks expected
to fail are the two sample-weight equivalence checks of the early-stopping
configurations: the validation rows are drawn at random (scikit-learn's
split, kept so that fits equal scikit-learn's), so weighing a row by 2 and
repeating it hold out different rows. ``xfail_strict`` makes each of them
a test that their failure is real, and every other check must pass.
"""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastbp.sklearn import MLPClassifier, MLPRegressor

# scikit-learn runs its own MLPs' checks with max_iter=100 (its instance
# generator); the same here for the stochastic solvers
ESTIMATORS = [
    MLPClassifier(max_iter=100),
    MLPClassifier(solver="sgd", max_iter=100),
    MLPClassifier(solver="lbfgs"),
    MLPClassifier(early_stopping=True, validation_fraction=0.2, max_iter=100),
    MLPRegressor(max_iter=100),
    MLPRegressor(solver="sgd", max_iter=100),
    MLPRegressor(solver="lbfgs"),
    MLPRegressor(early_stopping=True, validation_fraction=0.2, max_iter=100),
    MLPRegressor(loss="poisson", solver="lbfgs"),
]

_RANDOM_SPLIT = ("early stopping holds out rows at random, as scikit-learn does: a weight of "
                 "k and k repetitions hold out different rows")


def expected_failures(estimator):
    if estimator.early_stopping:
        return {"check_sample_weight_equivalence_on_dense_data": _RANDOM_SPLIT,
                "check_sample_weight_equivalence_on_sparse_data": _RANDOM_SPLIT}
    return {}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures,
                         xfail_strict=True)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
