"""One AsyncOpenAI client (and connection pool) per model configuration and event loop.

Every LLM with the same key, endpoint, timeout and retries shares it, so an agent file that
builds a new LLM for each session still keeps one pool of connections to the endpoint. The
client is closed when its last user lets go. Clients are kept per event loop: a connection
belongs to the loop that opened it.
"""

from __future__ import annotations

import asyncio
import os
import weakref
from typing import Any

import httpx2
import openai
from openai._models import FinalRequestOptions

Key = tuple[str | None, str | None, float, int, str]
_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Key, Lease]] = (
    weakref.WeakKeyDictionary()
)


class Lease:
    """A shared client and how many LLMs hold it."""

    def __init__(self, key: Key, client: openai.AsyncOpenAI, pool: dict[Key, Lease]) -> None:
        self.key = key
        self.client = client
        self.users = 0
        self._pool = pool

    async def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            if self._pool.get(self.key) is self:
                del self._pool[self.key]
            await self.client.close()


def acquire(args: dict[str, Any]) -> Lease:
    """The client for these LLM arguments (api_key, base_url, timeout, max_retries, transport).

    The key and endpoint come from OPENAI_API_KEY and OPENAI_BASE_URL when not given, read
    now, as the SDK reads them. Outside an event loop each call gets a client of its own.
    """
    key: Key = (
        args["api_key"] or os.environ.get("OPENAI_API_KEY"),
        args["base_url"] or os.environ.get("OPENAI_BASE_URL"),
        float(args["timeout"]),
        int(args["max_retries"]),
        str(args.get("transport", "httpx")),
    )
    try:
        pool = _shared.setdefault(asyncio.get_running_loop(), {})
    except RuntimeError:  # no running loop: nothing to share the connections with
        pool = {}
    lease = pool.get(key)
    if lease is None or lease.client.is_closed():
        client = SharedClient(
            api_key=key[0],
            base_url=key[1],
            timeout=key[2],
            max_retries=key[3],
            http_client=http_client(key[2]) if key[4] == "aiohttp" else None,
        )
        lease = pool[key] = Lease(key, client, pool)
    lease.users += 1
    return lease


Shape = tuple[str, httpx2.URL, httpx2.Headers, dict[str, Any]]  # a request but its body


class SharedClient(openai.AsyncOpenAI):
    """The SDK's AsyncOpenAI, building each request of a prepared body once per shape.

    For every request the SDK merges its headers (auth, defaults, retry count, timeout) into
    new httpx2 Headers five times over and parses its URL twice: about 0.18 ms of a request's
    0.9 ms of CPU, and all of it the same from one call to the next. Here a request whose body
    is prepared bytes (LLM.post_stream) is built by the SDK once for each shape (everything
    `_build_request` reads: method, URL, headers of the call, retry count, auth, the client's
    default headers and timeout, its HTTP client's headers), and later ones are that request
    with their own body. Anything else (a JSON body, files, query parameters, a per-call
    timeout, cookies the endpoint set) is built by the SDK as it is. Retries, auth hooks, the
    transport and the error types are the SDK's.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shapes: dict[tuple[Any, ...], Shape] = {}

    @property
    def user_agent(self) -> str:  # the SDK names its class here; the endpoint sees the SDK's
        return super().user_agent.replace(type(self).__name__, "AsyncOpenAI", 1)

    def _build_request(
        self, options: FinalRequestOptions, *, retries_taken: int = 0
    ) -> httpx2.Request:
        body = options.content
        if (
            not isinstance(body, bytes)
            or options.json_data is not None
            or options.extra_json is not None
            or options.files is not None
            or options.params
            or not isinstance(options.timeout, openai.NotGiven)
            or self._idempotency_header
            or self._client.cookies
        ):
            return super()._build_request(options, retries_taken=retries_taken)
        defaults = self.default_headers
        key = (
            options.method,
            options.url,
            tuple(options.headers.items()) if options.headers else (),
            retries_taken,
            tuple(self._auth_headers(options.security).items()),
            self._auth_query(options.security) or None,
            tuple((k, v) for k, v in defaults.items() if not isinstance(v, openai.Omit)),
            repr(self.timeout),
            tuple(self._client.headers.raw),
            self.base_url,
        )
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= 64:  # bounded: a rotating key makes a new shape each time
                self._shapes.clear()
            built = super()._build_request(options, retries_taken=retries_taken)
            headers = httpx2.Headers(
                [(k, v) for k, v in built.headers.raw if k.lower() != b"content-length"]
            )
            shape = self._shapes[key] = (built.method, built.url, headers, built.extensions)
        method, url, headers, extensions = shape
        # stream=: taken as given (content= would run every header through httpx2 again);
        # the request copies the shape's headers, and read() makes its body plain bytes
        request = httpx2.Request(
            method, url, headers=headers, stream=httpx2.ByteStream(body), extensions=extensions
        )
        request.headers["Content-Length"] = str(len(body))
        request.read()
        return request


def http_client(timeout: float) -> Any:
    """The SDK's aiohttp transport (openai.DefaultAioHttpClient), None where it is missing.

    It is the SDK's own, with its connection limits, and spends about a third less CPU per
    request than the default httpx2/httpcore2/h11 stack (bench/results, docs/performance.md).
    """
    try:
        return openai.DefaultAioHttpClient(timeout=timeout)
    except RuntimeError:  # openai installed without its aiohttp transport
        return None
