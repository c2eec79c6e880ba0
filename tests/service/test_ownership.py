"""Sessions belong to their identity: with auth off, that is the client's address."""

from __future__ import annotations

import aiohttp

from myagent.llm import AssistantTurn
from service.app import create_app
from tests.service.conftest import GateTool, create_session, receive_until, scripted, settings

OTHER_ADDRESS = "127.0.0.2"  # on Linux every 127/8 address is the loopback interface


async def test_session_of_another_address_is_not_found_with_auth_off(
    aiohttp_server, gate_tool: GateTool
) -> None:
    factory = scripted(AssistantTurn.call("slow_lookup", query="x"), "done", tools=[gate_tool])
    server = await aiohttp_server(create_app(settings(), {"weather": factory}), host="127.0.0.1")
    url = f"ws://127.0.0.1:{server.port}/ws"
    elsewhere = aiohttp.TCPConnector(local_addr=(OTHER_ADDRESS, 0))
    async with (
        aiohttp.ClientSession() as here,
        aiohttp.ClientSession(connector=elsewhere) as there,
        here.ws_connect(url) as owner,
        there.ws_connect(url) as stranger,
    ):
        await receive_until(owner, "system.connected")
        await receive_until(stranger, "system.connected")
        sid = await create_session(owner)
        await owner.send_json({"event": "user.message", "session_id": sid, "content": "go"})
        await receive_until(owner, "agent.tool_call")
        await gate_tool.started.wait()
        codes = {}
        for frame in (
            {"event": "user.resume_session", "session_id": sid, "last_seq": 0},
            {"event": "user.message", "session_id": sid, "content": "mine now"},
            {"event": "user.cancel", "session_id": sid},
            {"event": "user.close_session", "session_id": sid},
        ):
            await stranger.send_json(frame)
            answer = await stranger.receive_json(timeout=5)
            codes[frame["event"]] = answer.get("code") or answer["event"]
        assert set(codes.values()) == {"session_not_found"}, codes
        assert not gate_tool.cancelled.is_set()  # the owner's run went on
        gate_tool.gate.set()
        assert (await receive_until(owner, "agent.final_answer"))[-1]["content"] == "done"
