"""The seed design: the same protocol on the `websockets` library, as the seed's server is.

python -m bench.websockets_server --port 8302 --tokens 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
from http import HTTPStatus

from websockets.asyncio.server import Request, Response, ServerConnection, serve

from bench.frames import Session, connected


def make_handler(tokens: int):  # type: ignore[no-untyped-def]
    async def handler(ws: ServerConnection) -> None:
        await ws.send(connected())
        sessions: dict[str, Session] = {}
        async for raw in ws:
            frame = json.loads(raw)
            if frame["event"] == "user.create_session":
                session = Session()
                sessions[session.id] = session
                await ws.send(session.created())
            elif frame["event"] == "user.message":
                for data in sessions[frame["session_id"]].answer(frame.get("request_id"), tokens):
                    await ws.send(data)

    return handler


def health(connection: ServerConnection, request: Request) -> Response | None:
    if request.path == "/health":
        return connection.respond(HTTPStatus.OK, '{"status": "healthy"}\n')
    return None


async def run(port: int, tokens: int) -> None:
    async with serve(
        make_handler(tokens),
        "127.0.0.1",
        port,
        compression=None,
        process_request=health,
        max_size=2**20,
    ):
        await asyncio.get_running_loop().create_future()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8302)
    parser.add_argument("--tokens", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.port, args.tokens))


if __name__ == "__main__":
    main()
