"""Property-based: generated frames at a live server only ever get protocol answers.

Wrong types, huge strings, deep nesting, unicode edge cases, binary frames and every event with
fields missing; meanwhile a well-behaved client on another connection gets its whole run.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import structlog
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.protocol import CLIENT_EVENT_NAMES, SERVER_EVENTS, ErrorCode
from tests.service.conftest import offline_weather
from tests.service.conftest import settings as app_settings

LIMIT = app_settings().server.max_message_bytes
SERVER_EVENT_NAMES = {model.model_fields["event"].default for model in SERVER_EVENTS}
CODES = {code.value for code in ErrorCode}

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
events = st.sampled_from([*sorted(CLIENT_EVENT_NAMES), "user.hack", "", "agent.final_answer"])
objects = st.fixed_dictionaries(
    {},
    optional={
        "event": events | values,
        "session_id": st.text(max_size=40) | values,
        "content": st.text() | values,
        "last_seq": st.integers() | values,
        "request_id": st.text(max_size=200) | values,
        "agent": st.text(max_size=10) | values,
        "metadata": values,
    },
)
frames = st.one_of(
    objects.map(json.dumps),
    values.map(json.dumps),
    st.text(max_size=300),
    st.binary(max_size=40),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
    # a huge frame, built at send time so the example's repr stays short; 174_762 crosses 1 MiB
    st.tuples(st.just("huge"), st.sampled_from([10, 100_000, 174_761, 174_762, 300_000])),
    st.sampled_from(["\ud800", "NaN", "Infinity", '{"event": "user.ping"}' * 2, "\x00", "{}" * 3]),
)


async def scenario(batch: list[Any]) -> None:
    server = TestServer(create_app(app_settings(), {"weather": offline_weather}))
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            good = await http.ws_connect(server.make_url("/ws"))
            bad = await http.ws_connect(server.make_url("/ws"))
            await good.receive_json()
            await bad.receive_json()
            await good.send_json({"event": "user.create_session"})
            sid = (await good.receive_json())["session_id"]
            await good.send_json(
                {"event": "user.message", "session_id": sid, "content": "查询北京天气"}
            )
            for frame in batch:
                if isinstance(frame, tuple):
                    text = json.dumps({"event": "user.message", "content": "界" * frame[1]})
                    await bad.send_str(text)
                    if len(text) >= LIMIT:  # too large: closed with 1009, as documented
                        msg = await bad.receive()
                        while msg.type is aiohttp.WSMsgType.TEXT:
                            msg = await bad.receive()
                        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1009)
                        bad = await http.ws_connect(server.make_url("/ws"))
                        await bad.receive_json()
                elif isinstance(frame, bytes):
                    await bad.send_bytes(frame)
                else:
                    await bad.send_str(
                        frame.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
                    )
            await bad.send_json({"event": "user.ping", "request_id": "fuzz-end"})
            async with asyncio.timeout(10):
                while True:
                    reply: dict[str, Any] = await bad.receive_json()
                    assert reply["event"] in SERVER_EVENT_NAMES, reply
                    if reply["event"] == "agent.error":
                        assert reply["code"] in CODES and reply["error"], reply
                    if reply.get("request_id") == "fuzz-end" and reply["event"] == "system.pong":
                        break
                seqs = []
                while True:
                    event = await good.receive_json()
                    seqs.append(event["seq"])
                    if event["event"] == "agent.final_answer":
                        break
            assert seqs == list(range(2, 2 + len(seqs)))
            assert "北京的天气" in event["content"]
            await good.close()
            await bad.close()
    finally:
        await server.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(frames, min_size=1, max_size=12))
def test_fuzzed_frames_get_protocol_answers_and_never_a_traceback(batch: list[Any]) -> None:
    with structlog.testing.capture_logs() as logs:
        asyncio.run(scenario(batch))
    failures = [
        entry
        for entry in logs
        if entry["log_level"] in {"error", "critical"} or "exc_info" in entry
    ]
    assert not failures, failures
