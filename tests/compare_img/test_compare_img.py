"""qemu-img against pyqemu-img, one test per case of img_cases.py.

All selected cases start together on a thread pool, so the suite takes
about the time of its slowest cases rather than their sum.
"""

import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from img_cases import CASES  # noqa: E402
from img_harness import differences, missing_tools, run_case  # noqa: E402

DIVERGENCES = Path(__file__).with_name("DIVERGENCES.rst")


def _require_tools() -> None:
    missing = missing_tools()
    if not missing:
        return
    msg = f"{', '.join(missing)} not installed (Debian package qemu-utils)"
    if os.environ.get("CI") == "true":
        pytest.fail(msg + ": required under CI")
    pytest.skip(msg)


@pytest.fixture(scope="module")
def results(request):
    """Futures of (real, port, image differences) for every selected case."""
    _require_tools()
    selected = [item.callspec.params["case"] for item in request.session.items
                if getattr(item, "module", None) is request.module
                and hasattr(item, "callspec")]
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    futures = {case.name: pool.submit(run_case, case) for case in selected}
    yield futures
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_compare_img(case, results):
    real, port, image_diffs = results[case.name].result()
    found = differences(real, port, image_diffs)
    if case.diverges is None:
        assert not found, "pyqemu-img differs from qemu-img:\n" + \
            "".join(found)
    else:
        assert found, (f"{case.name} is marked diverges={case.diverges!r} "
                       "but now agrees: remove the mark")


def test_divergences_documented():
    """Every diverges= names a section of DIVERGENCES.rst."""
    text = DIVERGENCES.read_text()
    sections = set(re.findall(r"^\.\. _([a-z0-9-]+):$", text, re.M))
    for case in CASES:
        if case.diverges:
            assert case.diverges in sections, case.name


def test_case_names_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
