"""The offline model: a deterministic stand-in for an LLM, so the loop runs with no account.

In the spirit of pydantic-ai's TestModel: for a user message it calls the tools the message asks
for (words of a tool's name or description found in the message), builds their arguments from
the JSON schema (strings taken from the message), then streams an answer made of the results.
Its cost is bounded whatever the message: it reads the first MAX_READ characters, in linear
time, on a worker thread when the turn is long (INLINE_CHARS), and streams at most MAX_DELTAS
deltas.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from myagent.llm import AssistantTurn, make_tool_call
from myagent.schema import Message, Role, Usage

_CJK = re.compile(r"[\u3400-\u9fff]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9']+")
# An address starts where a run of its characters starts (the lookbehind) and its parts never
# give back what they took (possessive): one pass over the text, where the plain pattern tried
# every start of a long run again, quadratic in the run's length.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]++@[\w-]++(?:\.[\w-]++)+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# Words that say nothing about which tool or which argument is meant.
_LATIN_STOP = {
    "the",
    "a",
    "an",
    "get",
    "set",
    "please",
    "what",
    "what's",
    "whats",
    "is",
    "are",
    "in",
    "of",
    "for",
    "to",
    "at",
    "on",
    "me",
    "my",
    "and",
    "or",
    "with",
    "can",
    "you",
    "how",
    "tell",
    "show",
    "give",
    "about",
    "current",
    "now",
    "today",
    "info",
    "information",
    "from",
    "this",
    "that",
    "query",
    "find",
    "check",
    "tool",
    "use",
    "do",
    "does",
    "it",
    "be",
    "by",
    "like",
    "s",
}
_CJK_STOP = [
    "查询",
    "查一下",
    "查查",
    "获取",
    "请问",
    "请",
    "帮我",
    "帮忙",
    "一下",
    "告诉我",
    "我想知道",
    "看看",
    "现在",
    "今天",
    "的",
    "吗",
    "呢",
    "信息",
    "情况",
    "怎么样",
    "如何",
]
_CJK_STOP_SET = frozenset(_CJK_STOP)
_TOOL_BLOCKLIST = {"terminate"}
MAX_READ = 32_000  # characters of the question the model reads; the rest is not looked at
INLINE_CHARS = 4_000  # a turn this short is answered on the loop: a thread hop costs more
YIELD_EVERY = 64  # unpaced deltas between two turns of the event loop (~1 ms of work)
MAX_DELTAS = 400  # an answer streams in at most this many deltas (a short one: chunk_chars each)


def _keywords(text: str) -> set[str]:
    """Latin words and CJK bigrams of a tool's name and description."""
    words = {w.lower() for w in _WORD.findall(text.replace("_", " "))} - _LATIN_STOP
    words = {w for w in words if len(w) >= 3}
    for run in _CJK.findall(text):
        words.update(run[i : i + 2] for i in range(len(run) - 1))
    return words - set(_CJK_STOP)


def _residue(message: str, used: set[str]) -> str:
    """What is left of the message once tool words and filler are taken out."""
    text = message
    for word in sorted(used | _CJK_STOP_SET, key=len, reverse=True):
        if word in _CJK_STOP_SET and word not in text:  # no case in CJK: a plain test will do
            continue
        text = re.sub(re.escape(word), " ", text, flags=re.IGNORECASE)
    latin = [w for w in re.findall(r"[^\s,.;:!?，。？！、]+", text) if w.lower() not in _LATIN_STOP]
    return " ".join(latin).strip()


def build_arguments(schema: dict[str, Any], message: str, used: set[str]) -> dict[str, Any]:
    """Arguments for a tool, from its JSON schema and the user's message."""
    props: dict[str, Any] = schema.get("properties", {})
    required = list(schema.get("required", []))
    residue = _residue(message, used) or message
    numbers = _NUMBER.findall(message)
    lowered = message.lower()
    email = _EMAIL.search(message) if "@" in message else None
    args: dict[str, Any] = {}
    for key in required + [k for k in props if k not in required]:
        spec = props.get(key, {})
        kind = spec.get("type", "string")
        if "enum" in spec:
            mentioned = [v for v in spec["enum"] if str(v).lower() in lowered]
            args[key] = (mentioned or spec["enum"])[0]
        elif kind in ("integer", "number"):
            if not numbers and key not in required:
                continue
            value = float(numbers.pop(0)) if numbers else 1
            args[key] = int(value) if kind == "integer" else value
        elif kind == "boolean":
            args[key] = False
        elif kind == "string":
            if email and ("mail" in key.lower() or key.lower() in {"to", "recipient"}):
                args[key] = email.group()
            elif key in required:
                args[key] = residue
        elif key in required:
            args[key] = [] if kind == "array" else {}
    return args


def last_question(messages: Sequence[Message]) -> int:
    """The index of the user's last message (-1 if none); the conversation before it is not read."""
    return next(
        (
            i
            for i in range(len(messages) - 1, -1, -1)
            if messages[i].role is Role.USER and not messages[i].is_step_prompt
        ),
        -1,
    )


def turn_chars(messages: Sequence[Message]) -> int:
    """The characters of this turn: the user's last message and what followed it."""
    return sum(len(m.content or "") for m in messages[max(last_question(messages), 0) :])


class OfflineLLM:
    """A deterministic model that needs no network: it calls matching tools, then answers."""

    model_name = "offline"

    def __init__(self, *, token_delay_s: float = 0.0, chunk_chars: int = 2) -> None:
        self.token_delay_s = token_delay_s
        self.chunk_chars = chunk_chars

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[str | AssistantTurn]:
        # CPU-bound and linear in the message, which may be a MiB: a long one off the event loop
        if turn_chars(messages) <= INLINE_CHARS:
            turn = self.reply(messages, tools)
        else:
            turn = await asyncio.to_thread(self.reply, messages, tools)
        content = turn.content or ""
        # at most MAX_DELTAS deltas, a turn of the loop every YIELD_EVERY (or a pause before
        # each, if paced): an answer as long as the message it echoes never holds the loop
        size = max(self.chunk_chars, -(-len(content) // MAX_DELTAS))
        for count, start in enumerate(range(0, len(content), size)):
            if self.token_delay_s or count % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(self.token_delay_s)
            yield content[start : start + size]
        yield turn

    def reply(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]) -> AssistantTurn:
        """The turn this model gives for a conversation."""
        last_user = last_question(messages)
        question = messages[last_user].content or "" if last_user >= 0 else ""
        question = question[:MAX_READ]  # like a model's context window: its cost is bounded
        results = [m for m in messages[last_user + 1 :] if m.role is Role.TOOL]
        # a rough count of the turn's prompt: the question and what followed it (O(turn), not
        # O(conversation), as this runs for every turn of every session)
        usage = Usage(prompt_tokens=sum(len(m.content or "") for m in messages[last_user:]) // 4)
        if results:
            answer = "\n".join(m.content or "" for m in results)
            return AssistantTurn(content=answer, usage=usage + Usage(completion_tokens=len(answer)))
        calls = []
        lowered = question.lower()
        for tool in tools:
            function = tool.get("function", {})
            name = function.get("name", "")
            if name in _TOOL_BLOCKLIST:
                continue
            found = {
                w
                for w in _keywords(f"{name} {function.get('description', '')}")
                if w.lower() in lowered
            }
            if found:
                args = build_arguments(function.get("parameters") or {}, question, found)
                calls.append(make_tool_call(name, args))
        if calls:
            return AssistantTurn(tool_calls=calls, usage=usage)
        names = ", ".join(t.get("function", {}).get("name", "") for t in tools) or "none"
        answer = (
            f"(offline model) No tool matches “{question}”. Tools: {names}. "
            "Set OPENAI_API_KEY to talk to a real model."
        )
        return AssistantTurn(content=answer, usage=usage + Usage(completion_tokens=len(answer)))
