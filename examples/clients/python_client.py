"""The seed's Python client: connect, create a session, ask, print every event.

python examples/clients/python_client.py ws://127.0.0.1:8080 "查询上海天气" [--token T]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import websockets

TERMINAL = {"agent.final_answer", "agent.error", "agent.interrupted"}


async def ask(
    url: str, message: str, token: str | None = None, timeout_s: float = 60
) -> list[dict]:
    """Send one message in a new session and return every event up to the run's end."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    events: list[dict] = []
    async with (
        asyncio.timeout(timeout_s),
        websockets.connect(url, additional_headers=headers) as ws,
    ):
        connected = json.loads(await ws.recv())
        print(f"connected: agents={connected.get('agents')}")
        await ws.send(json.dumps({"event": "user.create_session"}))
        created = json.loads(await ws.recv())
        if created["event"] != "agent.session_created":
            raise RuntimeError(f"could not create a session: {created}")
        session_id = created["session_id"]
        print(f"session: {session_id}")
        await ws.send(
            json.dumps({"event": "user.message", "session_id": session_id, "content": message})
        )
        async for raw in ws:
            event = json.loads(raw)
            events.append(event)
            show(event)
            if event["event"] in TERMINAL:
                break
    return events


def show(event: dict) -> None:
    name = event["event"]
    if name == "agent.partial_answer":
        return  # deltas of the final answer; printed whole below
    if name == "agent.tool_call":
        meta = event["metadata"]
        print(f"{name}: {meta['tool']}({json.dumps(meta['args'], ensure_ascii=False)})")
    elif name == "agent.tool_result":
        print(f"{name}: [{event['metadata']['status']}] {event['content']}")
    elif name == "agent.error":
        print(f"{name}: {event['code']}: {event['error']}")
    else:
        print(f"{name}: {event.get('content', '')}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:8080")
    parser.add_argument("message", nargs="?", default="查询北京天气")
    parser.add_argument("--token", help="bearer token, if the server has auth on")
    args = parser.parse_args()
    events = asyncio.run(ask(args.url, args.message, args.token))
    return 0 if events and events[-1]["event"] == "agent.final_answer" else 1


if __name__ == "__main__":
    sys.exit(main())
