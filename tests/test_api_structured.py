"""Structured outputs and model names on the real server with SmolLM2, called with the official
`openai` client: `.parse()` with a Pydantic model, `json_schema` on completions, a schema the
grammar cannot hold refused by its place, the names clients copy, and the README's examples."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, Field

from app.base.config import Settings
from app.faces.api_server import ApiServer
from app.nemo.call_schema import MAX_CALLS, SchemaError, check_schema, tool_calls_schema
from app.services.root import Services
from conftest import free_port

README = Path(__file__).resolve().parent.parent / "README.md"


class Person(BaseModel):
    name: str = Field(max_length=20)
    age: int
    city: Literal["Paris", "Lyon", "Nice"]


@pytest.fixture(params=[512])
def server(request, home, model_path):
    """The API on SmolLM2 with a context of `request.param` tokens (a reply without max_tokens ends there)."""
    with Services(Settings(model=str(model_path), n_ctx=request.param, temperature=0.0)) as services:
        services.ensure_model()
        server = ApiServer(services, port=free_port()).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


def test_parse_with_a_pydantic_model_returns_the_parsed_object(client):
    completion = client.chat.completions.parse(
        model="smollm2", response_format=Person, temperature=0, max_tokens=200,
        messages=[{"role": "user", "content": "Invent a person who lives in France."}])
    [choice] = completion.choices
    assert choice.finish_reason == "stop"
    person = choice.message.parsed
    assert isinstance(person, Person) and len(person.name) <= 20 and person.city in ("Paris", "Lyon", "Nice")
    assert json.loads(choice.message.content) == person.model_dump()


def test_json_schema_holds_a_text_completion_too(client):
    schema = {"type": "object", "additionalProperties": False, "required": ["colours"],
              "properties": {"colours": {"type": "array", "minItems": 2, "maxItems": 3,
                                         "items": {"enum": ["red", "green", "blue", "yellow"]}}}}
    reply = client.completions.create(model="smollm2", prompt="Three colours of the rainbow, as JSON:", max_tokens=60,
                                      temperature=0, extra_body={"response_format": {
                                          "type": "json_schema", "json_schema": {"name": "colours", "schema": schema}}})
    assert reply.choices[0].finish_reason == "stop"
    colours = json.loads(reply.choices[0].text)["colours"]
    assert 2 <= len(colours) <= 3 and set(colours) <= {"red", "green", "blue", "yellow"}


def test_a_schema_the_grammar_cannot_hold_gets_a_400_naming_its_part(client):
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}, "required": ["age"]}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Age?"}], max_tokens=8,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "age", "schema": schema, "strict": True}})
    error = refused.value.body
    assert error["param"] == "response_format" and error["code"] == "unsupported_schema"
    assert "#/properties/age/minimum" in error["message"] and "'minimum' cannot be expressed" in error["message"]


def test_models_lists_the_short_name_and_aliases_and_each_is_accepted(client, model_path):
    names = [m.id for m in client.models.list().data]
    assert names == ["smollm2", model_path.stem, model_path.name], "short name first, then aliases"
    assert not any("/" in name or "\\" in name for name in names), "never a path"
    for name in names:
        reply = client.completions.create(model=name, prompt="One, two,", max_tokens=2, temperature=0)
        assert reply.usage.completion_tokens == 2 and reply.model == model_path.name
    with pytest.raises(openai.NotFoundError, match="smollm2"):
        client.completions.create(model=str(model_path), prompt="One", max_tokens=1)


def readme_block(language: str, containing: str) -> str:
    """The README's code block in `language` (under "The API") that contains `containing`."""
    api = README.read_text(encoding="utf-8").split("## The API", 1)[1]
    blocks = re.findall(rf"```{language}\n(.*?)```", api, re.S)
    return next(block for block in blocks if containing in block)


@pytest.mark.parametrize("server", [192], indirect=True)  # the examples set no max_tokens: short replies
def test_the_readmes_api_examples_run_as_written(server):
    """Run exactly as the README shows them; only the port is this test's (8000 may be taken)."""
    port = server.url.split(":")[2].split("/")[0]
    python = readme_block("python", "from openai import OpenAI").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    done = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr
    curl = readme_block("bash", "curl ").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    done = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "data: [DONE]" in done.stdout and '"content"' in done.stdout, done.stdout[-500:]


def test_check_schema_names_the_part_it_cannot_express():
    check_schema(Person.model_json_schema())
    with pytest.raises(SchemaError) as refused:
        check_schema({"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}})
    assert refused.value.where == "#/properties/tags/uniqueItems"
    with pytest.raises(SchemaError, match="only references inside the schema"):
        check_schema({"$ref": "https://example.com/schema.json"})
    with pytest.raises(SchemaError, match="unknown type"):
        check_schema({"type": "date"})


def test_the_schema_of_a_required_call_names_only_offered_tools():
    weather = {"type": "function", "function": {"name": "weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    odd = {"type": "function", "function": {"name": "odd", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}}}
    named = tool_calls_schema([weather, odd], "weather")
    assert (named["minItems"], named["maxItems"]) == (1, 1)
    assert named["items"]["properties"]["name"] == {"const": "weather"}
    assert named["items"]["properties"]["arguments"] == weather["function"]["parameters"]
    assert named["items"]["properties"]["id"]["pattern"] == "^[a-zA-Z0-9]{9}$"
    required = tool_calls_schema([weather, odd])
    assert (required["minItems"], required["maxItems"]) == (1, MAX_CALLS)
    assert [c["properties"]["name"]["const"] for c in required["items"]["anyOf"]] == ["weather", "odd"]
    assert required["items"]["anyOf"][1]["properties"]["arguments"] == {"type": "object"}, \
        "parameters the grammar cannot hold: any object, the call still names the tool"


def test_strings_in_the_grammar_hold_no_control_characters():
    """JSON forbids raw control characters in strings: the grammar must too (json.loads refused a
    call the tiny NeMo wrote with a raw newline in its query)."""
    from app.engine.grammar import schema_grammar

    [char] = [line for line in schema_grammar({"type": "string"}).splitlines() if line.startswith("char ::=")]
    assert char.startswith(r'char ::= [^"\\\x7F\x00-\x1F]'), char
