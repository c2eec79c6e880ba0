"""bench.cache_sim counts what a turn runs, under a real callgrind, and reads its dumps right."""

from __future__ import annotations

from bench.cache_sim import l2_cache, measure, per_turn, summary, table
from tests.support.system import require

DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
fn=(1) main
16 3 1 1 0 0 0 0 0 0
summary: 2000 900 500 30 60 20 4 10 6
totals: 2000 900 500 30 60 20 4 10 6
"""


def test_a_dump_gives_each_event_per_turn_and_the_misses_summed() -> None:
    figures = per_turn(summary(DUMP), turns=2)
    assert figures["instructions"] == 1000
    assert figures["l1d_misses"] == (60 + 20) / 2
    assert figures["l2_misses"] == (4 + 10 + 6) / 2  # code, data read and data write
    assert figures["l2_code_misses"] == 2


def test_the_simulated_l2_is_a_power_of_two() -> None:
    size, ways = l2_cache()
    assert size > 0 and size & (size - 1) == 0 and ways >= 1  # callgrind refuses other sizes


async def test_the_ceiling_runs_whole_turns_under_callgrind() -> None:
    """A real run: the turns were counted (not the start, not the warm-up), and the counts hold
    together: every data miss of the L2 is a miss of the L1 in front of it first."""
    require("valgrind")
    require("callgrind_control")
    results = await measure(turns=10, servers=["ceiling"])
    ceiling = results["servers"]["ceiling"]
    assert ceiling["instructions"] > 100_000  # a turn is some hundred thousand at least
    assert 0 < ceiling["l2_read_misses"] + ceiling["l2_write_misses"] <= ceiling["l1d_misses"]
    rows = table({"servers": {s: ceiling for s in ("ceiling", "ceiling-sdk", "myagent-ws")}})
    assert "| instructions per turn |" in rows and "| 1.00 | 1.00 | 1.00 |" in rows
