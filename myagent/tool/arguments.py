"""The model's tool arguments checked against the tool's JSON schema, before the tool runs.

A violation is the model's mistake, not a bug: it becomes a failed tool result that names each
argument and what was expected, so the model can call again; the tool never sees the arguments.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import structlog
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

log = structlog.get_logger("myagent.tool")
MAX_PROBLEMS = 5  # errors named in one result; the model fixes those and calls again
MAX_TEXT = 200  # characters of one error: it quotes the value the model sent


def argument_problem(tool: str, schema: dict[str, Any], args: dict[str, Any]) -> str | None:
    """What is wrong with these arguments for the tool's schema, or None if they fit it."""
    missing = [key for key in schema.get("required", []) if key not in args]
    if missing:
        return f"missing required argument(s): {', '.join(missing)}"
    validator = schema_validator(json.dumps(schema, sort_keys=True), tool)
    if validator is None or validator.is_valid(args):  # (is_valid stops at a first error)
        return None
    errors = sorted(validator.iter_errors(args), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return None
    named = "; ".join(describe(error) for error in errors[:MAX_PROBLEMS])
    return f"bad arguments for {tool}: {named}; call it again with arguments that fit its schema"


def describe(error: ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path)
    text = error.message if len(error.message) <= MAX_TEXT else error.message[:MAX_TEXT] + "…"
    return f"{where}: {text}" if where else text


@functools.lru_cache(maxsize=256)  # per schema text: checked on every call of every tool
def schema_validator(schema_text: str, tool: str) -> Validator | None:
    """The validator of a schema; None (and a warning once) if the schema itself is invalid."""
    schema = json.loads(schema_text)
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        log.warning("tool_schema_invalid", tool=tool, problem=exc.message[:MAX_TEXT])
        return None
    return cls(schema)
