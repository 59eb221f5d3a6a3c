"""pytest configuration of the fastbp tests: hypothesis profiles, the
warning filter hypothesis needs, and fixtures. Shared helpers are in
helpers.py.
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# ------------------------------------------------------------------ hypothesis

# deadline=None: the first example of a run pays for imports and workspace
# allocation, which is not what these tests are about. database=None keeps
# test runs from writing a .hypothesis directory into the checkout.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=150,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=1000,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    # hypothesis's failure report imports a module that emits this
    # DeprecationWarning; with filterwarnings = error it would replace the
    # falsifying example by an INTERNALERROR. Ignore just this one.
    config.addinivalue_line(
        "filterwarnings", "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
