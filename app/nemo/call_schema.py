"""The JSON schemas a reply may be held to: which ones llama.cpp's grammar can express, and the
schema of what NeMo writes after `[TOOL_CALLS]` when a call is required.

llama.cpp's converter (`app/engine/grammar.py`) silently drops what it cannot express
(`minimum`, `not`, `uniqueItems`, ...), so a schema is checked keyword by keyword first: a
strict reply must match the whole schema, and a part the grammar cannot hold is refused by its
place (`SchemaError.where`, a JSON pointer).

A required call is a JSON list of `{"name", "arguments", "id"}` objects: each name one of the
offered tools, its arguments that tool's parameter schema, its id 9 letters or digits.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

CALL_ID_PATTERN = "^[a-zA-Z0-9]{9}$"
MAX_CALLS = 4  # calls in one required reply: a model that never closes its list is stopped there
TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}
NOTES = {"title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated",
         "readOnly", "writeOnly", "format", "strict"}  # annotations: nothing to constrain
EXPRESSED = {"type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
             "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions",
             "pattern", "minLength", "maxLength"}
SCHEMA_MAPS = {"properties", "$defs", "definitions"}  # name -> schema
SCHEMA_LISTS = {"anyOf", "oneOf", "allOf", "prefixItems"}


class SchemaError(ValueError):
    """A part of a schema the grammar cannot express: `where` is its JSON pointer, `what` the keyword."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where or '#'}: {what}")
        self.where, self.what = where or "#", what


def check_schema(schema: Any, where: str = "#") -> None:
    """Raise SchemaError at the first keyword or value the grammar cannot express."""
    if schema is True or schema == {}:
        return
    if not isinstance(schema, dict):
        raise SchemaError(where, "a schema must be a JSON object")
    for key, value in schema.items():
        place = f"{where}/{key}"
        if key not in EXPRESSED | NOTES:
            raise SchemaError(place, f"'{key}' cannot be expressed by the grammar")
        if key in SCHEMA_MAPS:
            if not isinstance(value, dict):
                raise SchemaError(place, f"'{key}' must be an object of schemas")
            for name, sub in value.items():
                check_schema(sub, f"{place}/{name}")
        elif key in SCHEMA_LISTS:
            if not isinstance(value, list) or not value:
                raise SchemaError(place, f"'{key}' must be a non-empty list of schemas")
            for i, sub in enumerate(value):
                check_schema(sub, f"{place}/{i}")
        elif key == "items":
            check_schema(value, place)
        elif key == "additionalProperties" and not isinstance(value, bool):
            check_schema(value, place)
        elif key == "type":
            kinds = value if isinstance(value, list) else [value]
            if not kinds or any(kind not in TYPES for kind in kinds):
                raise SchemaError(place, f"unknown type {value!r}")
        elif key == "$ref" and not (isinstance(value, str) and value.startswith("#/")):
            raise SchemaError(place, "only references inside the schema ('#/...') can be followed")
        elif key == "pattern" and not (isinstance(value, str) and value.startswith("^") and value.endswith("$")):
            raise SchemaError(place, "a pattern must start with '^' and end with '$'")
    if "allOf" in schema and schema.get("type", "object") != "object":
        raise SchemaError(f"{where}/allOf", "'allOf' can only combine object schemas")


def tool_calls_schema(tools: Sequence[dict], name: str | None = None) -> dict:
    """The schema of a `[TOOL_CALLS]` reply offering `tools` (OpenAI function schemas): a list of
    1 to MAX_CALLS calls of any of them, or exactly one call of `name`. A tool whose parameters the grammar
    cannot express may be called with any JSON object."""
    calls = []
    for tool in tools:
        function = tool.get("function") or {}
        if name is not None and function.get("name") != name:
            continue
        parameters = function.get("parameters") or {"type": "object"}
        try:
            check_schema(parameters)
            if "$ref" in json.dumps(parameters):  # its references point into its own root
                raise SchemaError("#", "'$ref' inside a call")
        except SchemaError:
            parameters = {"type": "object"}
        calls.append({"type": "object", "additionalProperties": False, "required": ["name", "arguments", "id"],
                      "properties": {"name": {"const": function.get("name")}, "arguments": parameters,
                                     "id": {"type": "string", "pattern": CALL_ID_PATTERN}}})
    if not calls:
        raise ValueError(f"no offered tool is named {name!r}" if name else "no tools are offered")
    limits = {"minItems": 1, "maxItems": 1 if name is not None else MAX_CALLS}
    return {"type": "array", "items": calls[0] if len(calls) == 1 else {"anyOf": calls}, **limits}
