"""Configured tokens: a name (the identity) and the SHA-256 of the secret, parsed once from the
settings (`secret`, or `sha256:<hex>` of it)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

SHA256 = re.compile(r"sha256:([0-9a-fA-F]{64})")


class TokenLike(Protocol):
    """A named entry of auth.tokens (service.settings.TokenEntry fits)."""

    @property
    def name(self) -> str | None: ...
    @property
    def token(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Token:
    """A configured token: its name (the identity) and the SHA-256 of its secret."""

    name: str
    digest: bytes
    secret: str | None = field(default=None, compare=False)  # the plain value, for redaction

    def __repr__(self) -> str:
        return f"Token(name={self.name!r})"


def parse_token(value: str, name: str) -> Token:
    """A token from config: the secret itself, or `sha256:<64 hex digits>` of it."""
    if value.startswith("sha256:"):
        match = SHA256.fullmatch(value)
        if match is None:
            raise ValueError(
                f"token {name!r}: sha256: must be followed by the 64 hex digits of the token's "
                'SHA-256 (printf %s "$TOKEN" | sha256sum)'
            )
        return Token(name, bytes.fromhex(match.group(1)))
    return Token(name, hashlib.sha256(value.encode()).digest(), value)


def parse_tokens(entries: Iterable[TokenLike | str]) -> tuple[Token, ...]:
    """Named entries keep their name; bare ones are token-1, token-2... by position."""
    tokens = []
    for number, entry in enumerate(entries, start=1):
        if isinstance(entry, str):
            tokens.append(parse_token(entry, f"token-{number}"))
        else:
            tokens.append(parse_token(entry.token, entry.name or f"token-{number}"))
    return tuple(tokens)
