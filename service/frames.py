"""parse_frame(): a client text frame as a ClientEvent, or the protocol error that says why not."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from service.errors import InvalidJson, InvalidMessage, ServiceError, UnknownEvent
from service.protocol import CLIENT_EVENT_NAMES, ClientEvent, client_events


def parse_frame(text: str) -> ClientEvent:
    """The client event in a text frame; InvalidJson, InvalidMessage or UnknownEvent if not."""
    try:
        return client_events.validate_json(text)
    except ValidationError as exc:
        raise describe_invalid(text, exc) from None


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def describe_invalid(text: str, exc: ValidationError) -> ServiceError:
    """Turn a validation failure into the protocol's error, naming the field.

    invalid_json: not JSON, NaN/Infinity, too deep, or a JSON string or array (a frame is an
    object); invalid_message: a number, an object without `event`, or a bad field.
    """
    first = exc.errors()[0]
    if first["type"] in {"json_invalid", "json_type"}:
        return InvalidJson(f"the frame is not valid JSON: {first['msg']}")
    try:
        raw = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return InvalidJson("the frame is not valid JSON")
    if isinstance(raw, str | list):
        return InvalidJson('the frame must be a JSON object like {"event": "user.ping"}')
    if not isinstance(raw, dict):
        return InvalidMessage("a frame must be a JSON object with an `event` field")
    event = raw.get("event")
    if not isinstance(event, str):
        return InvalidMessage('event: missing or not a string; e.g. "user.message"')
    if event not in CLIENT_EVENT_NAMES:
        known = ", ".join(sorted(CLIENT_EVENT_NAMES))
        return UnknownEvent(f"unknown event {event[:64]!r}; known: {known}")
    problems = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"][1:]) or "(frame)"
        problems.append(f"{field}: {error['msg']}")
    return InvalidMessage("; ".join(problems[:3]))
