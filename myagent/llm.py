"""Chat models: the ChatModel protocol, LLM over the openai SDK, and ScriptedLLM for tests."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

import openai
import structlog
from openai._models import FinalRequestOptions
from pydantic import BaseModel, Field

from myagent import clients
from myagent.errors import LLMError, LLMRateLimitError
from myagent.schema import Function, Message, ToolCall, Usage
from myagent.wire import ChunkStream, RequestBody, ToolCallParts

log = structlog.get_logger("myagent.llm")
JSON_BODY = {"Content-Type": "application/json"}  # the headers of a prepared body
_call_ids = itertools.count(1)
T = TypeVar("T")


class closing_stream(Generic[T]):  # a class, not an @asynccontextmanager: it is in every step
    """Like contextlib.aclosing, for any async iterator: closes it now, not when collected.

    An async generator abandoned mid-iteration is otherwise closed later by the event loop,
    holding its HTTP response (or leaving its agent RUNNING) until then.
    """

    __slots__ = ("stream",)

    def __init__(self, stream: AsyncIterator[T]) -> None:
        self.stream = stream

    async def __aenter__(self) -> AsyncIterator[T]:
        return self.stream

    async def __aexit__(self, *exc_info: object) -> None:
        aclose = getattr(self.stream, "aclose", None)
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
    """An OpenAI-compatible chat model over the official `openai` SDK, streaming.

    Requests go through the SDK's client (its transport, connection pool, retries, auth and
    error types) with a body prepared once per message, and the stream is read without a
    pydantic model per chunk (see myagent.wire). Every LLM of the same configuration in an
    event loop shares one AsyncOpenAI client and its connection pool.
    """

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
        transport: Literal["aiohttp", "httpx"] = "aiohttp",
    ) -> None:
        self.model_name = model or os.environ.get("OPENAI_MODEL") or "gpt-4o-mini"
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._client_args: dict[str, Any] = {
            "api_key": api_key,
            "base_url": base_url,
            "timeout": timeout_s,
            "max_retries": max_retries,
            "transport": transport,
        }
        self._client = client
        self._owns_client = client is None
        self._lease: clients.Lease | None = None
        self._base_url: object = None  # the client's base_url that _chat_options were made of
        self._chat_options: FinalRequestOptions | None = None
        options: dict[str, Any] = {}
        if temperature is not None:
            options["temperature"] = temperature
        if max_tokens is not None:
            options["max_tokens"] = max_tokens
        self._body = RequestBody(self.model_name, options)
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
                self._lease = clients.acquire(self._client_args)
            except openai.OpenAIError as exc:
                raise LLMError(f"cannot create the OpenAI client: {exc}") from exc
            self._client = self._lease.client
        return self._client

    @property
    def chat_options(self) -> FinalRequestOptions:
        """The SDK's request options of a chat call but its body, made once per base_url
        (FinalRequestOptions.construct, which `post` runs per call, costs more than the copy),
        with the absolute URL: the SDK parses and merges a relative one on every call."""
        base = self.client.base_url
        if self._chat_options is None or base is not self._base_url:
            self._base_url = base
            self._chat_options = FinalRequestOptions.construct(
                method="post", url=f"{base}chat/completions", headers=JSON_BODY
            )
        return self._chat_options

    async def aclose(self) -> None:
        """Let go of the shared client (closed with its last user); a later call gets one again."""
        if self._owns_client and self._lease is not None:
            lease, self._lease, self._client = self._lease, None, None
            await lease.release()

    async def post_stream(self, body: bytes) -> ChunkStream:
        """POST a prepared chat-completions body (RequestBody) through the SDK's client, its
        retries, auth and error types included; the streamed response, read by ChunkStream."""
        options = self.chat_options.model_copy(update={"content": body})
        return await self.client.request(object, options, stream=True, stream_cls=ChunkStream)

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[str | AssistantTurn]:
        started = time.perf_counter()
        text: list[str] = []
        calls = ToolCallParts()
        usage: Any = None
        try:
            stream = await self.post_stream(self._body.build(messages, tools))
            async with closing_stream(stream.batches()) as batches:
                async for batch in batches:
                    for chunk in batch:
                        usage = chunk.get("usage") or usage
                        choices = chunk.get("choices")
                        if not choices:
                            continue
                        delta = choices[0].get("delta")
                        if not delta:
                            continue
                        content = delta.get("content")
                        if content:
                            if not isinstance(content, str):
                                raise ValueError(f"content is not text: {content!r:.80}")
                            text.append(content)
                            yield content
                        for part in delta.get("tool_calls") or ():
                            calls.add(part)
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
            if refused(exc):  # the SDK's aiohttp transport reports a refused connect as a timeout
                raise LLMError(f"cannot reach the model endpoint: {exc.__cause__}") from exc
            timeout = self._client_args["timeout"]
            raise LLMError(
                f"the model endpoint timed out (timeout_s={timeout}); "
                "raise timeout_s or check the endpoint"
            ) from exc
        except openai.APIConnectionError as exc:
            raise LLMError(f"cannot reach the model endpoint: {exc}") from exc
        except openai.APIError as exc:
            raise LLMError(f"the model endpoint reported an error: {exc.message}") from exc
        except (openai.OpenAIError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise LLMError(f"the model endpoint sent a malformed stream: {exc}") from exc
        turn_usage = read_usage(usage)
        self.total_usage = self.total_usage + turn_usage
        tool_calls = calls.tool_calls(new_call_id)
        log.debug(
            "llm_turn",
            model=self.model_name,
            duration_s=time.perf_counter() - started,
            tool_calls=len(tool_calls),
            completion_tokens=turn_usage.completion_tokens,
        )
        yield AssistantTurn(content="".join(text) or None, tool_calls=tool_calls, usage=turn_usage)


def refused(exc: BaseException) -> bool:
    """True if an error was caused by a connection that failed (not by a timeout)."""
    cause = exc.__cause__ or exc.__context__
    for _ in range(8):
        if cause is None:
            return False
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def new_call_id() -> str:
    return f"call_{next(_call_ids)}"


def read_usage(usage: Any) -> Usage:
    """The usage object of the last chunk that had one (include_usage), or zeros."""
    if not isinstance(usage, dict):
        return Usage()
    return Usage(
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
    )


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
