import gc
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from service.runtime.server import GC_THRESHOLDS  # noqa: E402


@pytest.fixture(autouse=True)
def server_gc_thresholds():
    """Run every benchmark (the engine and the naive baseline alike) under the cyclic-GC
    thresholds the server sets at start: with Python's defaults, gen-2 collections that
    the server never sees (~30 ms each, twice per 500 ticks at 2000 rooms) land in the
    timed rounds and dominate the means."""
    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    yield
    gc.set_threshold(*before)
