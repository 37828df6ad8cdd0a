"""The API as real clients use it: embeddings, log-probabilities and penalties with the official
`openai` SDK, Anthropic's Messages with the official `anthropic` SDK, all against the real server
(in-process ApiServer, with a key) and the real SmolLM2 model."""

from __future__ import annotations

import json
import math

import anthropic
import httpx
import openai
import pytest

from app.base.config import Settings
from app.faces.api_server import ApiServer, api_service
from app.services.root import Services
from conftest import free_port

KEY = "a-test-key-of-some-length"
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]
SYSTEM = "You answer in one short sentence."


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEMO_CHAT_HOME", str(tmp_path_factory.mktemp("home")))
        with Services(Settings(model="smollm2", n_ctx=2048, temperature=0.0)) as services:
            services.ensure_model()
            yield services


@pytest.fixture(scope="module")
def server(services):
    server = ApiServer(services, port=free_port(), api_key=KEY).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def claude(server):
    return anthropic.Anthropic(base_url=server.url.removesuffix("/v1"), api_key=KEY, max_retries=0, timeout=120)


# -- embeddings ----------------------------------------------------------------------------------
def test_embeddings_of_two_texts_are_unit_vectors_deterministic_and_alike_in_both_encodings(client, services):
    texts = ["The cat sleeps on the warm windowsill.", "Quarterly tax filings are due in April."]
    floats = client.embeddings.create(model="smollm2", input=texts, encoding_format="float")
    again = client.embeddings.create(model="smollm2", input=texts, encoding_format="float")
    packed = client.embeddings.create(model="smollm2", input=texts)  # the SDK asks for base64 and unpacks it
    alone = client.embeddings.create(model="smollm2", input=texts[1], encoding_format="float")
    width = services.engine.llm.n_embd()
    assert [d.index for d in floats.data] == [0, 1]
    first, second = (d.embedding for d in floats.data)
    assert len(first) == len(second) == width
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-4) for v in (first, second))
    assert first != second
    assert [d.embedding for d in again.data] == [first, second], "the same texts give the same vectors"
    assert [d.embedding for d in packed.data] == [first, second], "base64 carries the same float32 numbers"
    assert alone.data[0].embedding == second, "an input's vector does not depend on the others asked with it"
    prompts = [api_service(services).completion_prompt(text) for text in texts]
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == sum(map(len, prompts))
    ids = services.engine.tokenize(texts[0])
    by_ids = client.embeddings.create(model="smollm2", input=[ids], encoding_format="float")
    assert by_ids.usage.prompt_tokens == len(ids) and len(by_ids.data[0].embedding) == width


def test_bad_embedding_requests_get_openai_errors(client):
    with pytest.raises(openai.BadRequestError, match="input must be"):
        client.embeddings.create(model="smollm2", input=[])
    with pytest.raises(openai.BadRequestError, match="dimensions must be"):
        client.embeddings.create(model="smollm2", input="hello", dimensions=3)
    with pytest.raises(openai.BadRequestError, match="at most 2,048 are embedded"):
        client.embeddings.create(model="smollm2", input="word " * 3000)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hello")


# -- log-probabilities ---------------------------------------------------------------------------
def _check_entries(entries, top: int) -> None:
    for entry in entries:
        alternatives = [t.logprob for t in entry.top_logprobs]
        assert len(alternatives) == top and alternatives == sorted(alternatives, reverse=True)
        assert entry.logprob <= 0 and bytes(entry.bytes).decode("utf-8", errors="replace") == entry.token
        # temperature 0: the chosen token is the model's most likely one
        assert entry.token == entry.top_logprobs[0].token and math.isclose(entry.logprob, alternatives[0])


def test_chat_logprobs_are_given_for_each_token_streamed_or_not(client):
    whole = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=12,
                                           logprobs=True, top_logprobs=3)
    entries = whole.choices[0].logprobs.content
    assert len(entries) == whole.usage.completion_tokens == 12
    assert "".join(e.token for e in entries) == whole.choices[0].message.content
    _check_entries(entries, 3)
    streamed = [entry for chunk in client.chat.completions.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=12, logprobs=True, top_logprobs=3, stream=True)
        if chunk.choices and chunk.choices[0].logprobs for entry in chunk.choices[0].logprobs.content or []]
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in entries]
    plain = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=4)
    assert plain.choices[0].logprobs is None, "nothing is computed when none is asked"


def test_completion_logprobs_have_the_legacy_shape(client):
    reply = client.completions.create(model="smollm2", prompt="One, two, three,", temperature=0, max_tokens=6,
                                      logprobs=2)
    logprobs = reply.choices[0].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 6
    assert "".join(logprobs.tokens) == reply.choices[0].text
    assert logprobs.text_offset == [sum(map(len, logprobs.tokens[:i])) for i in range(6)]
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs):
        assert len(top) == 2 and max(top.values()) == pytest.approx(logprob) and top[token] == pytest.approx(logprob)
    streamed = [token for chunk in client.completions.create(
        model="smollm2", prompt="One, two, three,", temperature=0, max_tokens=6, logprobs=2, stream=True)
        if chunk.choices[0].logprobs for token in chunk.choices[0].logprobs.tokens]
    assert streamed == logprobs.tokens


# -- the parameters clients send by default ------------------------------------------------------
def test_penalties_bias_and_user_are_accepted_and_applied(client, services):
    def repeats(reply) -> int:  # tokens of the reply that it has written before
        tokens = reply.choices[0].logprobs.tokens
        return len(tokens) - len(set(tokens))

    asked = dict(model="smollm2", prompt="One, two, three,", temperature=0, max_tokens=20, logprobs=0)
    plain = client.completions.create(**asked)
    penalized = client.completions.create(**asked, frequency_penalty=2.0, presence_penalty=1.0, user="someone", n=1)
    assert penalized.choices[0].text != plain.choices[0].text and repeats(penalized) < repeats(plain)
    chat = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=4,
                                          frequency_penalty=1.0, presence_penalty=-0.5, user="someone", n=1)
    assert chat.choices[0].message.content
    [banana] = services.engine.tokenize(" banana")[:1]
    biased = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=3,
                                            logit_bias={str(banana): 100})
    assert biased.choices[0].message.content == services.engine.detokenize([banana]) * 3
    first = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=1,
                                           logprobs=True)
    banned = first.choices[0].logprobs.content[0].token
    [banned_id] = services.engine.tokenize(banned)
    unbiased = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=1,
                                              logit_bias={str(banned_id): -100}, logprobs=True)
    assert unbiased.choices[0].logprobs.content[0].token != banned


def test_parameters_out_of_range_get_clear_400s(client):
    for wrong, match in [({"n": 2}, "n=1"), ({"presence_penalty": 3}, "presence_penalty"),
                         ({"logit_bias": {"x": 1}}, "logit_bias"), ({"logit_bias": {"10000000": 5}}, "out of range"),
                         ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"), ({"top_logprobs": 2}, "logprobs: true")]:
        with pytest.raises(openai.BadRequestError, match=match):
            client.chat.completions.create(model="smollm2", messages=QUESTION, max_tokens=2, **wrong)
    with pytest.raises(openai.BadRequestError, match="logprobs must be an integer from 0 to 5"):
        client.completions.create(model="smollm2", prompt="Hi", max_tokens=2, logprobs=6)


# -- Anthropic Messages --------------------------------------------------------------------------
def test_anthropic_create_and_stream_agree_at_temperature_0(claude):
    # the SDK's newest versions have no `temperature` argument: it goes in the body as clients send it
    asked = dict(model="smollm2", max_tokens=40, extra_body={"temperature": 0}, system=SYSTEM, messages=QUESTION)
    created = claude.messages.create(**asked)
    with claude.messages.stream(**asked) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    [block] = created.content
    assert block.type == "text" and block.text and "".join(pieces) == block.text == final.content[0].text
    assert created.stop_reason == final.stop_reason and created.stop_reason in ("end_turn", "max_tokens")
    assert created.usage.output_tokens == final.usage.output_tokens > 0
    assert created.usage.input_tokens == final.usage.input_tokens > 0
    counted = claude.messages.count_tokens(model="smollm2", system=SYSTEM, messages=QUESTION)
    assert counted.input_tokens == created.usage.input_tokens


def test_anthropic_stop_sequences_and_max_tokens(claude):
    asked = dict(model="smollm2", extra_body={"temperature": 0}, system=SYSTEM, messages=QUESTION)
    text = claude.messages.create(max_tokens=40, **asked).content[0].text
    word = text.split()[1]
    stopped = claude.messages.create(max_tokens=40, stop_sequences=[word], **asked)
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    assert stopped.content[0].text == text[: text.index(word)]
    short = claude.messages.create(max_tokens=3, **asked)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 3


def test_anthropic_streams_send_the_event_sequence(server):
    body = {"model": "smollm2", "max_tokens": 8, "temperature": 0, "stream": True, "messages": QUESTION}
    with httpx.stream("POST", server.url + "/messages", json=body, headers={"x-api-key": KEY}, timeout=120) as answer:
        names = [line.removeprefix("event: ") for line in answer.iter_lines() if line.startswith("event: ")]
    deltas = names[2:-3]
    assert names[:2] == ["message_start", "content_block_start"] and deltas and set(deltas) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_anthropic_errors_have_anthropics_shape(claude, server):
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=QUESTION)
    assert missing.value.body["type"] == "error" and missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=server.url.removesuffix("/v1"), api_key="wrong", max_retries=0).messages.create(
            model="smollm2", max_tokens=8, messages=QUESTION)
    with pytest.raises(anthropic.BadRequestError, match="tools need a Mistral NeMo model"):
        claude.messages.create(model="smollm2", max_tokens=8, messages=QUESTION,
                               tools=[{"name": "f", "input_schema": {"type": "object"}}])
    answer = httpx.post(server.url + "/messages", json={"model": "smollm2", "messages": QUESTION},
                        headers={"authorization": f"Bearer {KEY}"})
    assert answer.status_code == 400 and answer.json()["error"] == {
        "type": "invalid_request_error", "message": "max_tokens: an integer of at least 1 is required"}


# -- the README ----------------------------------------------------------------------------------
def readme_sdk_examples() -> list[str]:
    """The Python blocks of the README's "From the OpenAI and Anthropic SDKs" section."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("### From the OpenAI and Anthropic SDKs", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def test_the_readme_sdk_examples_run(services):
    import subprocess
    import sys

    examples = readme_sdk_examples()
    assert len(examples) == 2 and "import anthropic" in examples[1]
    server = ApiServer(services, port=free_port()).start()  # loopback, no key: as the README's reader runs it
    try:
        port = server.url.split(":")[2].split("/")[0]
        outputs = []
        for code in examples:
            run = subprocess.run([sys.executable, "-c", code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr
            outputs.append(run.stdout)
        assert outputs[0].startswith(f"2 vectors of {services.engine.llm.n_embd()} numbers\n")
        assert len(outputs[1].splitlines()) >= 2, outputs[1]
    finally:
        server.stop()
