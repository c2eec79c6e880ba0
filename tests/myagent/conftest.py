"""Fixtures of the myagent tests: the fake OpenAI server and an LLM pointed at it."""

from collections.abc import AsyncIterator

import pytest

from myagent import LLM
from tests.support.openai_server import OpenAIServer


@pytest.fixture
async def openai_server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as server:
        yield server


@pytest.fixture
async def llm(openai_server: OpenAIServer) -> AsyncIterator[LLM]:
    model = LLM(
        model="test-model",
        api_key="test",
        base_url=openai_server.base_url,
        max_retries=0,
        timeout_s=5,
    )
    yield model
    await model.aclose()
