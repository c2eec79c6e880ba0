"""The chat-completions wire format, done once: request bodies as bytes, SSE chunks as dicts.

The openai SDK's `chat.completions.create` walks every message of the request through its
TypedDict transform and builds a pydantic `ChatCompletionChunk` for every streamed chunk;
with a long conversation that was most of a turn's CPU. Our messages are already valid (our
pydantic models built them), so `LLM` posts a prepared body through the SDK's low-level
`post` (its client, retries, auth, headers and error types all still apply) and reads the
stream with `ChunkStream`, which splits SSE events itself and parses each chunk once, with
jiter.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any, cast

import jiter
import openai

from myagent.schema import Function, Message, ToolCall


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8 bytes (what a message costs to send, not more)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


class RequestBody:
    """Builds the request body of one model; the tools' JSON is kept while they stay equal."""

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        self.model = model
        self.head = b'{"model":' + dumps(model) + b',"messages":['
        tail = {"stream": True, "stream_options": {"include_usage": True}, **options}
        self.tail = dumps(tail)[1:]  # '"stream":true,...}' after the messages' ','
        self._tools: list[dict[str, Any]] = []
        self._tools_json = b""

    def build(self, messages: Iterable[Message], tools: Sequence[dict[str, Any]]) -> bytes:
        """The JSON body: each message serialised once in its life (Message.wire_json)."""
        if tools:
            if tools != self._tools:  # a deep equality check costs far less than dumps
                self._tools, self._tools_json = list(tools), b',"tools":' + dumps(list(tools))
            tools_json = self._tools_json
        else:
            tools_json = b""
        return b"".join(
            (
                self.head,
                b",".join([m.wire_json() for m in messages]),
                b"]",
                tools_json,
                b",",
                self.tail,
            )
        )


class _SSEData:
    """Splits an SSE byte stream into the data of its events: a list per network read."""

    async def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[list[bytes]]:
        buffer = b""
        async for piece in iterator:
            buffer += piece
            if b"\r" in buffer:  # CRLF or CR line ends: rare, normalised (the fast path is LF)
                if buffer.endswith(b"\r"):
                    continue  # maybe half of a CRLF: wait for the next piece
                buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            end = buffer.rfind(b"\n\n")
            if end < 0:
                continue
            events, buffer = buffer[:end].split(b"\n\n"), buffer[end + 2 :]
            datas = [data for event in events if (data := event_data(event)) is not None]
            if datas:
                yield datas
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").strip(b"\n")
        if buffer:
            data = event_data(buffer)
            if data is not None:
                yield [data]


def event_data(event: bytes) -> bytes | None:
    """The data of one SSE event (its data lines joined), None for comments and empty ones."""
    if event.startswith(b"data: ") and b"\n" not in event:  # the usual shape, one line
        return event[6:]
    lines = [line for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[6:] if line[5:6] == b" " else line[5:] for line in lines)


class ChunkStream(openai.AsyncStream[list[dict[str, Any]]]):
    """The SDK's stream of a response, yielding each network read's chunks as plain dicts.

    It keeps the SDK's response handling and error mapping (a read timeout is an
    APITimeoutError, a dropped connection an APIConnectionError); only the SSE decoding and
    the per-chunk pydantic models are replaced.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._decoder = cast(Any, _SSEData())  # yields lists of data, which __stream__ reads

    def batches(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The stream's own generator (closing it closes the response), with no layer on top."""
        return self._iterator

    async def __stream__(self) -> AsyncIterator[list[dict[str, Any]]]:
        done = False
        try:
            async for batch in cast(AsyncIterator[list[bytes]], self._iter_events()):
                if done:
                    continue  # after [DONE]: read the body to its end, so the connection is kept
                chunks, done, error = parse_batch(batch)
                if chunks:
                    yield chunks  # what came before a bad chunk still counts
                if error is not None:
                    raise error
        finally:
            await self.response.aclose()


def parse_batch(batch: list[bytes]) -> tuple[list[dict[str, Any]], bool, Exception | None]:
    """The chunks of these events, whether [DONE] came, and the error that stopped them."""
    chunks: list[dict[str, Any]] = []
    for data in batch:
        if data.startswith(b"[DONE]"):
            return chunks, True, None
        try:
            chunk = jiter.from_json(data)
        except ValueError as exc:
            return chunks, False, exc
        if not isinstance(chunk, dict):
            return chunks, False, ValueError(f"a chunk is not a JSON object: {data[:80]!r}")
        if chunk.get("error"):
            return chunks, False, stream_error(chunk["error"])
        chunks.append(chunk)
    return chunks, False, None


def stream_error(error: Any) -> openai.APIError:
    """An error the endpoint sent inside the stream, as the SDK reports it (an APIError)."""
    message = error.get("message") if isinstance(error, dict) else None
    return openai.APIError(
        message if isinstance(message, str) else "An error occurred during streaming",
        request=cast(Any, None),
        body=error,
    )


class ToolCallParts:
    """Tool calls put together from streamed deltas, which carry the call's `index`."""

    def __init__(self) -> None:
        self.slots: dict[int, dict[str, str]] = {}

    def add(self, part: dict[str, Any]) -> None:
        index = part.get("index")
        call_id = part.get("id") or ""
        if not isinstance(index, int):  # some servers leave it out: a new id starts a new call
            same = [i for i, slot in self.slots.items() if call_id and slot["id"] == call_id]
            if same:
                index = same[0]
            else:
                index = len(self.slots) if call_id or not self.slots else max(self.slots)
        slot = self.slots.get(index)
        if slot is None:
            slot = self.slots[index] = {"id": "", "name": "", "arguments": ""}
        if call_id:
            slot["id"] = call_id
        function = part.get("function")
        if function:
            name = function.get("name") or ""
            if name != slot["name"]:  # some servers repeat the whole name in every delta
                slot["name"] += name
            slot["arguments"] += function.get("arguments") or ""

    def tool_calls(self, new_id: Any) -> list[ToolCall]:
        return [
            ToolCall(
                id=slot["id"] or new_id(),
                function=Function(name=slot["name"], arguments=slot["arguments"]),
            )
            for _, slot in sorted(self.slots.items())
        ]
