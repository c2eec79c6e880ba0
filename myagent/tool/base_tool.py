"""BaseTool and ToolResult: what an agent author subclasses to give the model a tool."""

from __future__ import annotations

import inspect
from abc import abstractmethod
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic._internal._model_construction import ModelMetaclass

# Authors write `name = "get_weather"` with no annotation, as the seed does; pydantic refuses an
# unannotated override of a field, so the metaclass annotates these before pydantic sees them.
_TOOL_FIELDS: dict[str, Any] = {
    "name": str,
    "description": str,
    "parameters": dict[str, Any] | None,
}


class _ToolMeta(ModelMetaclass):
    def __new__(
        mcs, cls_name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> type:
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
        return f"Error: {self.error}" if self.error else str(self.output or "")


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
    def schema(self) -> dict[str, Any]:
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
    fields: dict[str, Any] = {}
    for param in list(inspect.signature(func).parameters.values())[1:]:  # skip self
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        annotation = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    model = create_model(f"{func.__qualname__}_args", **fields)
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    schema.setdefault("properties", {})
    schema["type"] = "object"
    return schema
