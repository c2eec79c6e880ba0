"""The web console: its page at / (when no upgrade is asked) and its files under /static/."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).parent / "static"


async def console(request: web.Request) -> web.StreamResponse:
    index = STATIC / "index.html"
    if not index.is_file():
        return web.json_response(
            {"error": "no web console in this build; connect a WebSocket client to /ws"}, status=404
        )
    return web.FileResponse(index, headers={"Cache-Control": "no-cache"})


def static_files(folder: Path) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The console's files, by name. They are checked with the server on each load (ETag,
    Last-Modified: no-cache), so a browser never runs an old app.js against a new page."""
    files = {path.name: path for path in folder.iterdir() if path.is_file()}

    async def static_file(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            return web.json_response({"error": "no such file"}, status=404)
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    return static_file
