"""bench.gc_heap drives two real servers (CPython's thresholds, ours) and counts from /metrics."""

from __future__ import annotations

from bench.gc_heap import CPYTHON, measure, table
from service.settings import GC_THRESHOLD


async def test_both_servers_run_their_windows_and_count_their_collections() -> None:
    results = await measure(
        windows=2, turns_each=3, pin=False
    )  # 150 turns a window, a session each
    for name, threshold in (("cpython", CPYTHON), ("ours", GC_THRESHOLD)):
        assert results[name]["threshold"] == list(threshold)
        for window in results[name]["windows"]:
            assert (window["turns"], window["errors"]) == (150, 0), name
            assert len(window["collections"]) == 3 and min(window["collections"]) >= 0
    young = [sum(w["collections"][0] for w in results[n]["windows"]) for n in ("cpython", "ours")]
    assert young[0] > young[1], young  # the same turns, fewer collections at ours
    rows = table(results, 150).splitlines()
    assert len(rows) == 4 and rows[2].startswith("| 1 (150) |") and rows[3].startswith("| 2 (300)")
