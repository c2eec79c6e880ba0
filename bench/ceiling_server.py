"""The ceiling: the thinnest aiohttp server speaking the protocol, with zero agent work.

/ws answers each message with the frames the service sends, one by one; /health answers with
the fields PROTOCOL.md gives it. No middleware, no logging, no metrics.

python -m bench.ceiling_server --port 8301 --tokens 50
"""

from __future__ import annotations

import argparse
import json
import time

from aiohttp import WSMsgType, web

from bench.frames import Session, connected, now


def make_app(tokens: int) -> web.Application:
    started = time.monotonic()
    sockets: set[web.WebSocketResponse] = set()
    counts = {"sessions": 0}

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=20, compress=False)
        await ws.prepare(request)
        sockets.add(ws)
        await ws.send_str(connected())
        sessions: dict[str, Session] = {}
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if frame["event"] == "user.create_session":
                    session = Session()
                    sessions[session.id] = session
                    counts["sessions"] += 1
                    await ws.send_str(session.created())
                elif frame["event"] == "user.message":
                    for data in sessions[frame["session_id"]].answer(
                        frame.get("request_id"), tokens
                    ):
                        await ws.send_str(data)
        finally:
            sockets.discard(ws)
            counts["sessions"] -= len(sessions)
        return ws

    async def health(request: web.Request) -> web.Response:
        """The body PROTOCOL.md gives /health, built the plainest way."""
        return web.json_response(
            {
                "status": "healthy",
                "timestamp": now(),
                "version": "ceiling",
                "uptime_s": round(time.monotonic() - started, 3),
                "active_connections": len(sockets),
                "active_sessions": counts["sessions"],
                "running_sessions": 0,
                "agents": ["bench"],
            }
        )

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8301)
    parser.add_argument("--tokens", type=int, default=50)
    args = parser.parse_args()
    web.run_app(
        make_app(args.tokens), host="127.0.0.1", port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
