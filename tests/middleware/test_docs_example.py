"""docs/middleware.md's "Adding a middleware" works as written: its class, its config line."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import load_settings
from tests.middleware.conftest import BEARER, TOKEN, requests_logged, service_app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "middleware.md"


def docs_example() -> tuple[str, str]:
    """The example's Python file and its `middlewares:` line, as the docs print them."""
    text = DOCS.read_text(encoding="utf-8")
    section = text[text.index("## Adding a middleware") :]
    code = re.search(r"```python\n(# config/deny_list\.py\n.*?)```", section, re.DOTALL)
    line = re.search(r"```yaml\n(middlewares: \[deny_list\.py:DenyList.*?)\n```", section)
    assert code is not None and line is not None, "the example moved: update this test"
    return code.group(1), line.group(1)


async def test_docs_example_middleware_runs_as_written(aiohttp_client, tmp_path, logs) -> None:
    code, line = docs_example()
    (tmp_path / "deny_list.py").write_text(code, encoding="utf-8")
    config = tmp_path / "server.yaml"
    config.write_text(f"{line}\nserver: {{trusted_proxies: [127.0.0.1]}}\n", encoding="utf-8")
    client = await aiohttp_client(
        service_app(load_settings(config, env={"MYAGENT_WS_TOKENS": TOKEN}))
    )
    denied = await client.get("/metrics", headers={**BEARER, "X-Forwarded-For": "198.51.100.7"})
    assert denied.status == 403
    assert (await denied.json())["error"] == "this address is blocked"
    allowed = await client.get("/metrics", headers={**BEARER, "X-Forwarded-For": "198.51.100.8"})
    assert allowed.status == 200
    reasons = [entry.get("reason") for entry in requests_logged(logs)]
    assert reasons == ["deny_list", None]  # the refusal logged its own line, once
