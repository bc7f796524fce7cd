import pytest

from compressai_psic.vlp import tiny_vlp


@pytest.fixture(scope="module")
def vlp():
    """The ``tiny`` VLP (seed 0)."""
    return tiny_vlp(seed=0)
