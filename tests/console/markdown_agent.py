"""A test agent whose model answers in Markdown: a table, a nested list, a blockquote, and text
that must stay text (a script tag, a javascript: link)."""

from collections.abc import AsyncIterator, Sequence
from typing import Any

from myagent import create_react_agent
from myagent.llm import AssistantTurn
from myagent.schema import Message

ANSWER = """Here is the forecast.

| city | sky |
| --- | --- |
| Beijing | sunny |
| Paris | rain |

- Asia
  - Beijing
  - Tokyo
- Europe

> Take an umbrella in Paris.

<script>alert(1)</script> [click me](javascript:alert(2)) [source](https://example.com/)"""


class MarkdownLLM:
    """The same Markdown answer to every message, streamed in small pieces."""

    model_name = "markdown"

    async def stream(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[str | AssistantTurn]:
        for start in range(0, len(ANSWER), 16):
            yield ANSWER[start : start + 16]
        yield AssistantTurn(content=ANSWER)


agent = create_react_agent(name="markdown", tools=[], llm=MarkdownLLM())
