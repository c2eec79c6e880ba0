"""The cycle collector of a real server: it does not walk the heap every few hundred objects.

A server holds every session's objects; with CPython's default thresholds (700, 10, 10) a
turn's allocations set off a young collection every few turns and a full one, which walks
every session, every few hundred (docs/performance.md, "The garbage collector"). The same
turns against a server at CPython's defaults and one at ours, counted by /metrics.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from bench.gc_heap import collections
from service.cli import tune_gc
from service.errors import ConfigError
from service.settings import GC_THRESHOLD, load_settings
from tests.support.cluster import ROOT, Conversation, Replica

AGENT = ROOT / "bench" / "bench_agent.py"  # the offline model with no pacing delay
TURNS = 300


async def young_collections(tmp_path: Path, env: dict[str, str], name: str) -> float:
    """Generation-0 collections in the server while it runs TURNS turns, each in a session of
    its own (closed after it: a socket holds at most 16)."""
    replica = Replica(AGENT, tmp_path, env, name)
    await replica.start()
    try:
        async with aiohttp.ClientSession() as http:
            talk = Conversation(http)
            await talk.connect(replica)
            before = await collections(replica.port)
            for _ in range(TURNS):
                await talk.create()
                await talk.say("查询北京天气")
                assert (await talk.until())[-1]["event"] == "agent.final_answer"
                assert talk.ws is not None
                await talk.ws.send_json(
                    {"event": "user.close_session", "session_id": talk.session_id}
                )
                await talk.until("agent.session_closed")
            after = await collections(replica.port)
    finally:
        await replica.close()
    return after[0] - before[0]


async def test_a_server_collects_far_less_often_than_at_cpythons_defaults(
    tmp_path: Path,
) -> None:
    default = await young_collections(
        tmp_path, {"MYAGENT_WS_SERVER__GC_THRESHOLD": "[700, 10, 10]"}, "default"
    )
    ours = await young_collections(tmp_path, {}, "ours")
    assert default >= 5, f"{TURNS} turns set off only {default} collections at the default"
    assert ours * 5 <= default, (ours, default)


def test_gc_threshold_is_a_setting_with_a_clear_error() -> None:
    assert load_settings(env={}).server.gc_threshold == GC_THRESHOLD
    env = {"MYAGENT_WS_SERVER__GC_THRESHOLD": "[2000, 20, 5]"}
    assert load_settings(env=env).server.gc_threshold == (2000, 20, 5)
    for bad in ("[0, 10, 10]", "[3000000000, 10, 10]", "[true, 10, 10]", "[700, 10]"):
        with pytest.raises(ConfigError, match=r"server\.gc_threshold"):  # not at serve time
            load_settings(env={"MYAGENT_WS_SERVER__GC_THRESHOLD": bad})


def test_tune_gc_sets_the_thresholds_and_freezes_the_start_up_heap() -> None:
    import gc

    saved = gc.get_threshold()
    try:
        tune_gc((1234, 11, 12))
        assert gc.get_threshold() == (1234, 11, 12)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
