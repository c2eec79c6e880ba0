"""The stack as configured: which layers, in what order, and all of them on the real service."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import ClassVar, Self

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from middleware import MIDDLEWARES, FrameInfo, FrameRejected, Middleware, StackContext
from middleware.frames import FRAME_CODES
from service.errors import ConfigError
from service.keys import metrics_key
from service.protocol import ErrorCode
from service.settings import Settings, load_settings
from tests.middleware.conftest import (
    BEARER,
    TOKEN,
    UPGRADE,
    make_settings,
    requests_logged,
    sample,
    service_app,
    stack_app,
)
from tests.service.conftest import create_session, receive_until


def test_stack_default_order_is_auth_rate_limit_logging() -> None:
    _, stack, _ = stack_app(make_settings())
    assert [layer.name for layer in stack.layers] == ["auth", "rate_limit", "logging"]
    owners = [layer.name for layer in stack.layers if layer.sees_frames()]
    assert owners == ["rate_limit", "logging"]  # auth has nothing to say about frames
    assert len(stack.frame_hooks) == 2


class Handlers(Middleware):
    """Notes the handler each request reaches it with."""

    name = "handlers"
    seen: ClassVar[list[Handler]] = []

    @classmethod
    def create(cls, ctx: StackContext) -> Self:
        return cls()

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.seen.append(handler)
        return await handler(request)


async def test_stack_chain_is_built_once_per_route(aiohttp_client) -> None:
    settings = make_settings(middlewares=["tests.middleware.test_stack:Handlers", "auth"])
    client = await aiohttp_client(stack_app(settings)[0])
    Handlers.seen.clear()
    for _ in range(3):
        assert (await client.get("/metrics")).status == 200
    first, second, third = Handlers.seen
    assert first is second is third  # the same chain below this layer, not one per request


def test_stack_yaml_decides_which_layers_run_and_in_what_order(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("middlewares: [logging, auth]\n", encoding="utf-8")
    _, stack, _ = stack_app(load_settings(config, env={}))
    assert [layer.name for layer in stack.layers] == ["logging", "auth"]
    assert [layer.name for layer in stack.layers if layer.sees_frames()] == ["logging"]
    assert len(stack.frame_hooks) == 1


@pytest.mark.parametrize(
    "line, problem",
    [
        ("middlewares: [auth, cache]", "unknown middleware 'cache'; known: auth, rate_limit"),
        ("middlewares: [auth, logging, auth]", "listed twice"),
    ],
)
def test_stack_bad_middleware_list_is_a_config_error(tmp_path: Path, line, problem) -> None:
    config = tmp_path / "server.yaml"
    config.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"middlewares: .*{problem}"):
        load_settings(config, env={})


async def test_stack_without_rate_limit_never_answers_429(aiohttp_client) -> None:
    settings = make_settings(middlewares=["auth", "logging"], rate_limit={"http_burst": 1})
    client = await aiohttp_client(service_app(settings))
    for _ in range(5):
        assert (await client.get("/ws", headers=BEARER)).status == 400  # a GET, not an upgrade


async def test_stack_unauthenticated_flood_is_401_then_429_each_logged(
    aiohttp_client, logs
) -> None:
    app = service_app(make_settings(rate_limit={"auth_failures_per_min": 5}))
    client = await aiohttp_client(app)
    answers = [await client.get("/ws", headers=UPGRADE) for _ in range(12)]
    assert [a.status for a in answers] == [401] * 5 + [429] * 7
    assert all(a.headers["Retry-After"] == "12" for a in answers[5:])
    lines = requests_logged(logs)
    assert [(line["status"], line["reason"]) for line in lines] == [(401, "missing_token")] * 5 + [
        (429, "auth_throttled")
    ] * 7
    assert len({line["request_id"] for line in lines}) == 12
    metrics = app[metrics_key]
    count = "myagent_ws_http_requests_total"
    assert sample(metrics, count, route="/ws", status="401") == 5
    assert sample(metrics, count, route="/ws", status="429") == 7
    assert sample(metrics, "myagent_ws_auth_failures_total", reason="missing") == 5
    assert sample(metrics, "myagent_ws_auth_failures_total", reason="throttled") == 7
    assert (await client.get("/health")).status == 200  # never locked out


async def test_stack_authenticated_flood_is_limited_per_identity_and_logged(
    aiohttp_client, logs
) -> None:
    app = service_app(make_settings(rate_limit={"http_per_s": 0.01, "http_burst": 3}))
    client = await aiohttp_client(app)
    statuses = [(await client.get("/ws", headers=BEARER)).status for _ in range(5)]
    assert statuses == [400, 400, 400, 429, 429]
    lines = requests_logged(logs)
    assert [line.get("reason") for line in lines][-2:] == ["rate_limited_http"] * 2
    assert {line["identity"] for line in lines} == {"alice"}
    assert sample(app[metrics_key], "myagent_ws_rate_limited_total", level="http") == 2


async def test_stack_token_never_reaches_logs_or_metrics(aiohttp_client, logs) -> None:
    wrong = "wrong-guess-4417"
    app = service_app(make_settings())
    client = await aiohttp_client(app)
    async with client.ws_connect("/ws", params={"token": TOKEN}) as ws:
        await ws.receive_json()
        session_id = await create_session(ws)
        await ws.send_json(
            {"event": "user.message", "session_id": session_id, "content": "查询北京天气"}
        )
        await receive_until(ws, "agent.final_answer")
    async with client.ws_connect("/", headers=BEARER) as ws:
        await ws.receive_json()
    await client.get("/ws", params={"token": wrong}, headers=UPGRADE)
    await client.get("/ws", headers={"Authorization": f"Bearer {wrong}", **UPGRADE})
    scrape = await (await client.get("/metrics")).text()
    captured = json.dumps(logs, default=str, ensure_ascii=False)
    assert len(requests_logged(logs)) == 5
    for secret in (TOKEN, wrong):
        assert secret not in captured and secret not in scrape


class Stamp(Middleware):
    """A middleware written as the docs say: one class, one line of config."""

    name = "stamp"
    built: ClassVar[list[Stamp]] = []  # every Stamp the stack made, for the test to look at
    seen: list[str]

    def __init__(self) -> None:
        self.seen = []

    @classmethod
    def create(cls, ctx: StackContext) -> Self:
        stamp = cls()
        cls.built.append(stamp)
        return stamp

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not response.prepared:
            response.headers["X-Stamp"] = "yes"
        return response

    async def on_frame(self, frame: FrameInfo) -> None:
        self.seen.append(f"{frame.identity}:{frame.event}")


STAMP_FILE = """
from aiohttp import web
from middleware import Middleware


class Stamp(Middleware):
    name = "stamp"

    @classmethod
    def create(cls, ctx):
        return cls()

    async def handle(self, request, handler):
        response = await handler(request)
        response.headers["X-Stamp"] = "from a file"
        return response
"""


async def test_stack_a_new_middleware_is_one_class_and_one_line(aiohttp_client) -> None:
    settings = Settings.model_validate(
        {
            "auth": {"tokens": [{"name": "alice", "token": TOKEN}]},
            "middlewares": ["auth", "tests.middleware.test_stack:Stamp"],
        }
    )
    app = service_app(settings)
    client = await aiohttp_client(app)
    assert (await client.get("/metrics")).headers["X-Stamp"] == "yes"
    async with client.ws_connect("/ws", headers=BEARER) as ws:
        await ws.receive_json()
        await ws.send_json({"event": "user.ping"})
        await receive_until(ws, "system.pong")
    stamp = Stamp.built[-1]
    assert isinstance(stamp, Stamp) and stamp.seen == ["alice:user.ping"]


async def test_stack_a_middleware_file_is_found_next_to_the_config(
    aiohttp_client, tmp_path: Path
) -> None:
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "stamp.py").write_text(STAMP_FILE, encoding="utf-8")
    config = tmp_path / "server.yaml"
    config.write_text("middlewares: [auth, 'extra/stamp.py:Stamp', logging]\n", encoding="utf-8")
    settings = load_settings(config, env={"MYAGENT_WS_TOKENS": TOKEN})
    client = await aiohttp_client(service_app(settings))
    assert (await client.get("/metrics")).headers["X-Stamp"] == "from a file"


def test_stack_middlewares_can_be_set_from_the_environment() -> None:
    settings = load_settings(None, env={"MYAGENT_WS_MIDDLEWARES": "auth, logging"})
    assert settings.middlewares == ["auth", "logging"]


@pytest.mark.parametrize(
    "entry, problem",
    [
        ("stamp", "unknown middleware 'stamp'; known: auth, rate_limit, logging"),
        ("no_such_module_here:Stamp", "importing no_such_module_here failed"),
        ("tests.middleware.test_stack:Nothing", "has no Middleware subclass named 'Nothing'"),
        ("tests.middleware.test_stack:STAMP_FILE", "has no Middleware subclass"),
        ("/nowhere/stamp.py:Stamp", "importing /nowhere/stamp.py failed"),
    ],
)
def test_stack_an_entry_that_names_no_middleware_is_refused_at_start(
    entry: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        service_app(load_settings(None, env={"MYAGENT_WS_MIDDLEWARES": f"auth,{entry}"}))


def test_stack_settings_never_import_a_middleware_file(tmp_path: Path) -> None:
    (tmp_path / "loud.py").write_text("raise RuntimeError('imported')\n", encoding="utf-8")
    config = tmp_path / "server.yaml"
    config.write_text("middlewares: [auth, 'loud.py:Loud']\n", encoding="utf-8")
    settings = load_settings(config, env={})  # validation reads the entry, imports nothing
    assert settings.middlewares[-1].endswith("loud.py:Loud")
    with pytest.raises(ConfigError, match=r"importing .*loud\.py failed: RuntimeError: imported"):
        service_app(settings)  # building the stack is what imports it


class Refuse(Middleware):
    """Refuses every user.message with the code it is given."""

    name = "refuse"
    code = "rate_limited"

    @classmethod
    def create(cls, ctx: StackContext) -> Self:
        return cls()

    async def on_frame(self, frame: FrameInfo) -> None:
        if frame.event == "user.message":
            raise FrameRejected(self.code, "not now", retry_after_s=1.0)


def test_stack_frame_rejections_use_codes_clients_know() -> None:
    assert {code.value for code in ErrorCode} >= FRAME_CODES
    with pytest.raises(ValueError, match=r"'blocked'.*rate_limited"):
        FrameRejected("blocked", "no")


@pytest.mark.parametrize(
    "code, answer", [("rate_limited", "rate_limited"), ("blocked", "internal")]
)
async def test_stack_a_frame_middleware_never_breaks_the_socket(
    aiohttp_client, monkeypatch: pytest.MonkeyPatch, code: str, answer: str
) -> None:
    monkeypatch.setitem(MIDDLEWARES, "refuse", Refuse)
    monkeypatch.setattr(Refuse, "code", code)
    settings = make_settings(middlewares=["auth", "refuse"])
    client = await aiohttp_client(service_app(settings))
    async with client.ws_connect("/ws", headers=BEARER) as ws:
        await ws.receive_json()
        session_id = await create_session(ws)
        await ws.send_json({"event": "user.message", "session_id": session_id, "content": "x"})
        assert (await receive_until(ws, "agent.error"))[-1]["code"] == answer
        await ws.send_json({"event": "user.ping"})
        assert (await receive_until(ws, "system.pong"))[-1]["event"] == "system.pong"
