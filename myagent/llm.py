"""Chat models: the ChatModel protocol, LLM over the openai SDK, and ScriptedLLM for tests."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar, runtime_checkable

import openai
import structlog
from pydantic import BaseModel, Field

from myagent.errors import LLMError, LLMRateLimitError
from myagent.schema import Function, Message, ToolCall, Usage

log = structlog.get_logger("myagent.llm")
_call_ids = itertools.count(1)
T = TypeVar("T")


@asynccontextmanager
async def closing_stream(stream: AsyncIterator[T]) -> AsyncIterator[AsyncIterator[T]]:
    """Like contextlib.aclosing, for any async iterator: closes it now, not when collected.

    An async generator abandoned mid-iteration is otherwise closed later by the event loop,
    holding its HTTP response (or leaving its agent RUNNING) until then.
    """
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class AssistantTurn(BaseModel):
    """One whole answer of the model: text, tool calls, and what it cost."""

    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)

    @classmethod
    def call(cls, name: str, content: str | None = None, **args: Any) -> AssistantTurn:
        """A turn that calls one tool with these arguments."""
        return cls(content=content, tool_calls=[make_tool_call(name, args)])


def make_tool_call(name: str, args: dict[str, Any] | str) -> ToolCall:
    arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return ToolCall(id=f"call_{next(_call_ids)}", function=Function(name=name, arguments=arguments))


@runtime_checkable
class ChatModel(Protocol):
    """What an agent needs of a model: a stream of text deltas ending in the whole turn."""

    model_name: str

    def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[str | AssistantTurn]:
        """Yield text deltas (str) as they come, then exactly one AssistantTurn."""
        ...


class LLM:
    """An OpenAI-compatible chat model over the official `openai` SDK, streaming."""

    def __init__(
        self,
        model: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        self.model_name = model or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._client_args: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "timeout": timeout_s,
            "max_retries": max_retries,
        }
        self._client = client
        self._owns_client = client is None
        self.total_usage = Usage()

    def __deepcopy__(self, memo: dict[int, Any]) -> LLM:
        """Agents are deep-copied per session; they share this model and its HTTP client."""
        return self

    def __repr__(self) -> str:
        return f"LLM(model={self.model_name!r})"

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            try:
                self._client = openai.AsyncOpenAI(**self._client_args)
            except openai.OpenAIError as exc:
                raise LLMError(f"cannot create the OpenAI client: {exc}") from exc
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP client this model created; a later call creates a new one."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[str | AssistantTurn]:
        request: dict[str, Any] = {
            "model": self.model_name,
            "messages": [m.to_openai() for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if tools:
            request["tools"] = list(tools)
        if self.temperature is not None:
            request["temperature"] = self.temperature
        if self.max_tokens is not None:
            request["max_tokens"] = self.max_tokens
        started = time.perf_counter()
        text: list[str] = []
        calls = _ToolCallParts()
        usage = Usage()
        try:
            response = await self.client.chat.completions.create(**request)
            try:
                async for chunk in response:
                    if chunk.usage is not None:
                        usage = Usage(
                            prompt_tokens=chunk.usage.prompt_tokens or 0,
                            completion_tokens=chunk.usage.completion_tokens or 0,
                        )
                    if not chunk.choices:
                        continue
                    delta = chunk.choices[0].delta
                    if delta.content:
                        text.append(delta.content)
                        yield delta.content
                    for part in delta.tool_calls or ():
                        calls.add(part)
            finally:
                await response.close()
        except openai.RateLimitError as exc:
            raise LLMRateLimitError(
                f"the model endpoint is rate limiting us (429) after retries: {exc.message}",
                retry_after_s=retry_after_s(exc.response.headers),
            ) from exc
        except openai.APIStatusError as exc:
            raise LLMError(
                f"the model endpoint answered HTTP {exc.status_code}: {exc.message}"
            ) from exc
        except openai.APITimeoutError as exc:
            timeout = self._client_args["timeout"]
            raise LLMError(
                f"the model endpoint timed out (timeout_s={timeout}); "
                "raise timeout_s or check the endpoint"
            ) from exc
        except openai.APIConnectionError as exc:
            raise LLMError(f"cannot reach the model endpoint: {exc}") from exc
        except openai.APIError as exc:
            raise LLMError(f"the model endpoint reported an error: {exc.message}") from exc
        except (openai.OpenAIError, ValueError, KeyError) as exc:
            raise LLMError(f"the model endpoint sent a malformed stream: {exc}") from exc
        self.total_usage = self.total_usage + usage
        tool_calls = calls.tool_calls()
        log.debug(
            "llm_turn",
            model=self.model_name,
            duration_s=time.perf_counter() - started,
            tool_calls=len(tool_calls),
            completion_tokens=usage.completion_tokens,
        )
        yield AssistantTurn(content="".join(text) or None, tool_calls=tool_calls, usage=usage)


class _ToolCallParts:
    """Tool calls put together from streamed deltas, which carry the call's `index`."""

    def __init__(self) -> None:
        self.slots: dict[int, dict[str, str]] = {}

    def add(self, part: Any) -> None:
        index = part.index
        if index is None:  # some servers leave it out: a new id starts a new call
            same = [i for i, slot in self.slots.items() if part.id and slot["id"] == part.id]
            if same:
                index = same[0]
            else:
                index = len(self.slots) if part.id or not self.slots else max(self.slots)
        slot = self.slots.setdefault(index, {"id": "", "name": "", "arguments": ""})
        slot["id"] = part.id or slot["id"]
        if part.function is not None:
            name = part.function.name or ""
            if name != slot["name"]:  # some servers repeat the whole name in every delta
                slot["name"] += name
            slot["arguments"] += part.function.arguments or ""

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(
                id=slot["id"] or f"call_{next(_call_ids)}",
                function=Function(name=slot["name"], arguments=slot["arguments"]),
            )
            for _, slot in sorted(self.slots.items())
        ]


def retry_after_s(headers: Any) -> float | None:
    """The wait a 429 asked for: retry-after-ms, else retry-after seconds (as the SDK reads it)."""
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            return float(value) * scale
        except ValueError:
            continue
    return None


class ScriptExhaustedError(LLMError):
    """ScriptedLLM was asked for more turns than it was given."""


class ScriptedLLM:
    """A model that plays back scripted turns, for tests; it fails if asked for one more."""

    model_name = "scripted"

    def __init__(self, *turns: AssistantTurn | str | Exception, chunk_chars: int = 4) -> None:
        self.turns = list(turns)
        self.calls: list[list[Message]] = []
        self.chunk_chars = chunk_chars

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[str | AssistantTurn]:
        self.calls.append(list(messages))
        index = len(self.calls) - 1
        if index >= len(self.turns):
            raise ScriptExhaustedError(
                f"ScriptedLLM was asked for turn {index + 1} but has {len(self.turns)} scripted"
            )
        turn = self.turns[index]
        if isinstance(turn, Exception):
            raise turn
        if isinstance(turn, str):
            turn = AssistantTurn(content=turn)
        content = turn.content or ""
        for start in range(0, len(content), self.chunk_chars):
            yield content[start : start + self.chunk_chars]
        yield turn
