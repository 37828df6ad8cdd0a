"""JSON schemas as llama.cpp grammars (GBNF), with llama.cpp's own converter
(`llama_cpp.llama_grammar.SchemaConverter`, the one behind `LlamaGrammar.from_json_schema`),
after the schema is checked for parts the converter would silently drop (app/nemo/call_schema.py).
"""

from __future__ import annotations

import json

from app.nemo.call_schema import SchemaError, check_schema


# The converter of llama-cpp-python 0.3.36 lets a string hold any character but `"` and `\`;
# JSON forbids control characters in strings (llama.cpp's own converter excludes them too).
LOOSE_CHAR = r'char ::= [^"\\] |'
JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


def schema_grammar(schema: dict | str) -> str:
    """GBNF text (root rule `root`) for replies that match `schema` (a dict or its JSON text)."""
    from llama_cpp.llama_grammar import SchemaConverter  # imports llama.cpp

    schema = json.loads(schema) if isinstance(schema, str) else schema
    check_schema(schema)
    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    try:
        converter.visit(converter.resolve_refs(json.loads(json.dumps(schema)), ""), "")
    except (AssertionError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SchemaError("#", f"llama.cpp's converter refused it ({exc or type(exc).__name__})") from None
    return converter.format_grammar().replace(LOOSE_CHAR, JSON_CHAR)
