"""myagent-ws: the aiohttp service that serves agents over WebSocket."""

__version__ = "0.1.0"
