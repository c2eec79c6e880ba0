"""Token redaction: one function for every text the service logs, and the processor that runs it.

`Redactor` replaces, in every string of a log record (nested ones too), the configured token
values themselves and any text shaped like a credential: `token=T` (also behind one or more
layers of percent-encoding: `tok%65n=T`, `/ws%253Ftoken%253DT`), `Bearer T` and
`Authorization: T` whatever separates them (spaces, an obs-fold, control characters, or their
escapes as `repr` writes them). `configure_logging` puts it in front of the renderer of both
pipelines, structlog's and the stdlib's, so no line reaches the output without passing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

REDACTED = "[redacted]"
MAX_DECODES = 3  # layers of percent-encoding looked through
SECRET_KEYS = frozenset({"token", "authorization", "metrics_token", "api_key", "password"})
# what may stand between a credential's name and its value: whitespace, control characters,
# and those characters as repr() escapes them (an error quoting the raw bytes of a header)
_GAP = r"(?:[\s\x00-\x1f\x7f]|\\[rnt0]|\\x[0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4})"
_VALUE = r"[^\s&;?#'\"\\,]+"  # tokens may hold a /
SECRET = re.compile(
    rf"((?:token|api_key|password)=|bearer{_GAP}+|authorization(?:{_GAP}|[:=\"'])+"
    rf"(?:(?:bearer|basic|token){_GAP}+)?)({_GAP}*){_VALUE}",
    re.IGNORECASE,
)


def _scrub(text: str) -> str:
    if text.isascii():  # else IGNORECASE folds non-ASCII letters too (K, ſ): the full scan
        # SECRET matches only where a credential's name is: most log values hold none, and
        # looking for the names costs a small part of the pattern's scan (~30k instructions)
        low = text.lower()
        if not (
            "token=" in low
            or "bearer" in low
            or "authorization" in low
            or "password=" in low
            or "api_key=" in low
        ):
            return text
    return SECRET.sub(rf"\1\2{REDACTED}", text)


class Redactor:
    """Credentials out of text: the configured token values, and credential-shaped text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = set()
        for secret in secrets:
            if secret:
                values.update({secret, quote(secret, safe=""), quote(quote(secret, safe=""))})
        self.secrets = sorted(values, key=len, reverse=True)  # a longer form before its part

    def __call__(self, text: str) -> str:
        """The text with every token in it replaced by [redacted]."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _scrub(text)
        layer = text
        for _ in range(MAX_DECODES):  # a token hidden behind percent-encoding
            if "%" not in layer:
                break
            decoded = unquote(layer)
            if decoded == layer:
                break
            cleaned = _scrub(decoded)
            if cleaned != decoded:  # from here the text is shown decoded, and redacted
                text = cleaned
            layer = cleaned
        return text

    def value(self, key: object, value: Any) -> Any:
        if isinstance(value, str):
            return REDACTED if key in SECRET_KEYS and value else self(value)
        if isinstance(value, Mapping):
            return {k: self.value(k, v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(key, v) for v in value]
        return value

    def processor(self, logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        """A structlog processor: every string of the record, nested ones too, redacted."""
        return {key: self.value(key, value) for key, value in event.items()}


redact = Redactor()  # the patterns alone, for text built before logging is configured
