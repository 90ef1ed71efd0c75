"""qemu-io against pyqemu-io, one test per case of cases.py.

All selected cases start together on a thread pool (one worker per CPU, and
each case runs its two programs at once), so the suite takes about the time
of its slowest cases rather than their sum.
"""

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cases import CASES
from harness import differences, missing_tools, run_case

DIVERGENCES = Path(__file__).with_name("DIVERGENCES.rst")

# Cases the port does not pass yet because a feature of 7.2 is missing (not
# a difference kept on purpose): they run, and must still fail, so that one
# that starts passing is noticed and taken off this list.
NOT_YET: dict[str, str] = {}


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
    """Futures of (real, port) for every selected case, by case name."""
    _require_tools()
    selected = [item.callspec.params["case"] for item in request.session.items
                if getattr(item, "module", None) is request.module
                and hasattr(item, "callspec")]
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
    futures = {case.name: pool.submit(run_case, case) for case in selected}
    yield futures
    pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("case", [
    pytest.param(c, marks=pytest.mark.xfail(reason=NOT_YET[c.name],
                                            strict=True))
    if c.name in NOT_YET else c for c in CASES], ids=[c.name for c in CASES])
def test_compare(case, results):
    real, port = results[case.name].result()
    found = differences(real, port)
    if case.diverges is None:
        assert not found, "pyqemu-io differs from qemu-io:\n" + "".join(found)
    else:
        assert found, (f"no difference any more: remove the entry"
                       f" {case.diverges!r} from DIVERGENCES.rst and"
                       f" the case's diverges=")


def test_not_yet_names_are_cases():
    assert set(NOT_YET) <= {c.name for c in CASES}


def test_case_names_unique():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


def test_divergences_documented():
    """Every case that diverges on purpose names an entry of the list."""
    anchors = set(re.findall(r"^\.\. _([\w-]+):$", DIVERGENCES.read_text(),
                             re.M))
    for case in CASES:
        if case.diverges is not None:
            assert case.diverges in anchors, case.name
