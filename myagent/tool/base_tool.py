"""BaseTool and ToolResult: what an agent author subclasses to give the model a tool."""

from __future__ import annotations

import inspect
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
from pydantic import BaseModel, ConfigDict, Field, PydanticUserError, create_model

log = structlog.get_logger("myagent.tool")

# Authors write `name = "get_weather"` with no annotation, as the seed does; pydantic refuses an
# unannotated override of a field, so the metaclass annotates these before pydantic sees them.
_TOOL_FIELDS: dict[str, Any] = {
    "name": str,
    "description": str,
    "parameters": dict[str, Any] | None,
}


if TYPE_CHECKING:  # mypy knows BaseModel's metaclass; this hook changes no type
    _ToolMeta = type
else:

    class _ToolMeta(type(BaseModel)):  # pydantic's metaclass, reached through its public class
        def __new__(mcs, cls_name, bases, namespace, **kwargs):
            annotations = namespace.setdefault("__annotations__", {})
            for field, annotation in _TOOL_FIELDS.items():
                if field in namespace and field not in annotations:
                    annotations[field] = annotation
            return super().__new__(mcs, cls_name, bases, namespace, **kwargs)


class ToolResult(BaseModel):
    """What a tool returns: output for the model, or an error, and an optional system note."""

    output: Any = None
    error: str | None = None
    system: str | None = None

    def __bool__(self) -> bool:
        return any((self.output, self.error, self.system))

    def __str__(self) -> str:
        if self.error:
            return f"Error: {self.error}"
        return "" if self.output is None else str(self.output)


class BaseTool(BaseModel, metaclass=_ToolMeta):
    """A tool the model can call: a name, a description and a JSON schema of its arguments.

    `parameters` may be left out; the schema then comes from `execute`'s signature.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    _schema_cache: ClassVar[dict[type, dict[str, Any]]] = {}

    name: str
    description: str = ""
    parameters: dict[str, Any] | None = Field(default=None)

    @abstractmethod
    async def execute(self, *args: Any, **kwargs: Any) -> ToolResult | Any:
        """Do the work; raise ToolError for an expected failure."""

    async def __call__(self, **kwargs: Any) -> ToolResult | Any:
        return await self.execute(**kwargs)

    @property
    def schema(self) -> dict[str, Any]:  # type: ignore[override]  # BaseModel.schema is deprecated
        """The JSON schema of the arguments, given or inferred from `execute`."""
        if self.parameters is not None:
            return self.parameters
        cls = type(self)
        if cls not in self._schema_cache:
            self._schema_cache[cls] = signature_schema(cls.execute)
        return self._schema_cache[cls]

    def to_param(self) -> dict[str, Any]:
        """The tool as the chat-completions API takes it."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.schema,
            },
        }


def signature_schema(func: Any) -> dict[str, Any]:
    """A JSON schema of a function's keyword arguments, built with pydantic."""
    try:  # resolve `from __future__ import annotations` strings in the tool's own module
        params = list(inspect.signature(func, eval_str=True).parameters.values())
    except (NameError, TypeError, SyntaxError):
        params = list(inspect.signature(func).parameters.values())
    params = [p for p in params[1:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # no self
    try:
        return _schema(func, params, typed=True)
    except PydanticUserError:
        log.warning("tool_schema_untyped", tool=func.__qualname__)  # a type pydantic cannot map
        return _schema(func, params, typed=False)


def _schema(func: Any, params: list[inspect.Parameter], *, typed: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for index, param in enumerate(params):
        annotation = param.annotation
        if not typed or annotation is param.empty or isinstance(annotation, str):
            annotation = Any
        default = ... if param.default is param.empty else param.default
        # Internal field names, the real ones as aliases: `json`, `copy` or `schema` would
        # shadow BaseModel attributes, `_x` would be private.
        fields[f"arg{index}"] = (annotation, Field(default, alias=param.name))
    model = create_model(f"{func.__qualname__}_args", **fields)
    schema: dict[str, Any] = model.model_json_schema(by_alias=True)
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    schema["type"] = "object"
    return schema
