import numpy as np
import pytest

try:
    from hypothesis import settings
except ImportError:  # hypothesis is a test extra; only the property tests need it
    settings = None
else:
    # Property tests draw the same examples on every run: CI never passes or fails by luck.
    settings.register_profile("bptt", derandomize=True, print_blob=True)
    settings.load_profile("bptt")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
