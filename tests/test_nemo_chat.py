"""NeMo in the chat: exact Tekken prompt ids on the real engine, and the tool loop wiring."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from app.nemo import tekken as tk
from app.services.chat import ChatService
from app.engine.chat_format import chat_format_for
from app.base.config import Settings
from app.base.jobs import CancelToken
from app.base.gguf_info import read_gguf_info
from app.history import History
from app.engine.chat_format import NemoChatFormat
from app.nemo.prompt import encode_chat
from app.engine.llama import LlamaEngine
from app.runtime import GenerationStats, LoadOptions, SamplingOptions

REFERENCE = MistralTokenizer.v3(is_tekken=True)


def reference_ids(messages: list[dict]) -> list[int]:
    return REFERENCE.encode_chat_completion(ChatCompletionRequest(messages=messages)).tokens


def test_a_nemo_gguf_is_prompted_with_mistral_commons_exact_ids(tiny_nemo_gguf, tmp_path):
    engine = LlamaEngine()
    history = History(tmp_path / "chat.db")
    service = ChatService(history, engine)
    settings = Settings(model=str(tiny_nemo_gguf), n_ctx=512, max_tokens=8, temperature=0.0, tools="",
                        system_prompt="Réponds en français.")
    text = "मुझे एक कहानी सुनाओ [INST] </s>"  # Hindi: where llama.cpp's own Tekken splitting differs
    final = list(service.send(None, text, settings))[-1]
    assert isinstance(chat_format_for(engine), NemoChatFormat)
    expected = reference_ids([{"role": "system", "content": "Réponds en français."},
                              {"role": "user", "content": text}])
    assert final.stats.prompt_tokens == len(expected)
    assert engine.llm._input_ids[: len(expected)].tolist() == expected  # what llama.cpp evaluated
    assert engine.llm.tokenize(text.encode(), add_bos=False, special=False) != tk.Tekken.from_gguf(
        tiny_nemo_gguf).encode(text), "llama.cpp's own tokenizer splits Hindi differently"
    assert final.status == "complete" and final.stats.completion_tokens > 0
    engine.unload()
    history.close()


@dataclass
class ScriptedCompletion:
    reply: list[int]
    stats: GenerationStats = field(default_factory=GenerationStats)

    cancel: CancelToken = field(default_factory=CancelToken)
    stop_after: int | None = None  # the user presses Stop once this many tokens are out

    def ids(self):
        """The scripted ids; like the real engine, no token comes once the cancel is set (set in
        advance: none at all)."""
        for count, token in enumerate(self.reply):
            if self.cancel.cancelled:
                self.stats.stop_reason = "cancelled"
                return
            self.stats.completion_tokens += 1
            yield token
            if count + 1 == self.stop_after:
                self.cancel.cancel()
        self.stats.stop_reason = "cancelled" if self.cancel.cancelled else "eos"


class ScriptedEngine:
    """Unit-test stand-in for the engine: replays scripted replies, records the prompts."""

    def __init__(self, gguf_path, replies: list[list[int]], stop_after: int | None = None) -> None:
        self.info = read_gguf_info(gguf_path)
        self.model_name = self.info.path.name
        self.replies, self.prompts, self.stop_after = list(replies), [], stop_after
        self.n_ctx = 4096  # tokens a sequence holds: scripted conversations never need folding

    def load(self, options: LoadOptions) -> None:
        pass

    def tekken(self):
        return tk.Tekken.from_gguf(self.info.path)

    def complete(self, prompt_ids, sampling, cancel=None, progress=None, decoder=None):
        self.prompts.append(list(prompt_ids))
        stop_after, self.stop_after = self.stop_after, None  # one Stop, in the first reply
        return ScriptedCompletion(self.replies.pop(0), cancel=cancel or CancelToken(), stop_after=stop_after)


def test_tool_calls_run_are_saved_and_fed_back(tiny_nemo_gguf, tmp_path):
    tekken = tk.Tekken.from_gguf(tiny_nemo_gguf)
    call = [{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "abcDEF123"}]
    engine = ScriptedEngine(tiny_nemo_gguf, [
        [tk.TOOL_CALLS, *tekken.encode(json.dumps(call))],
        tekken.encode("The answer is 42."),
        tekken.encode("You asked about 6*7."),
    ])
    history = History(tmp_path / "chat.db")
    service = ChatService(history, engine)
    settings = Settings(model=str(tiny_nemo_gguf), tools="calculator,current_datetime")
    final = list(service.send(None, "What is 6 times 7?", settings))[-1]
    assert final.text == "The answer is 42." and final.status == "complete"
    user, step, answer = history.messages(final.conversation_id)
    record = json.loads(step["content"])
    assert step["role"] == "tool" and record["name"] == "calculator" and record["result"]["result"] == 42
    assert answer["content"] == "The answer is 42."

    tools = [t.schema() for t in service.enabled_tools(settings)]
    conversation = [{"role": "user", "content": "What is 6 times 7?"},
                    {"role": "assistant", "content": None, "tool_calls": [
                        {"id": "abcDEF123", "type": "function",
                         "function": {"name": "calculator", "arguments": '{"expression": "6*7"}'}}]},
                    {"role": "tool", "tool_call_id": "abcDEF123", "name": "calculator",
                     "content": json.dumps({"expression": "6*7", "result": 42})}]
    assert engine.prompts[1] == encode_chat(tekken, conversation, tools)

    list(service.send(final.conversation_id, "Why?", settings))
    follow_up = conversation + [{"role": "assistant", "content": "The answer is 42."},
                                {"role": "user", "content": "Why?"}]
    assert engine.prompts[2] == encode_chat(tekken, follow_up, tools), "saved tool steps are replayed"
    history.close()


def test_a_stop_while_nemo_writes_a_tool_call_saves_no_step_and_the_chat_goes_on(tiny_nemo_gguf, tmp_path):
    """Stop pressed half way through a `[TOOL_CALLS]` reply: the half call is not run or saved, the
    reply is saved as stopped, and the next message builds its prompt without an error."""
    tekken = tk.Tekken.from_gguf(tiny_nemo_gguf)
    call = [{"name": "calculator", "arguments": {"expression": "6*7"}, "id": "abcDEF123"}]
    engine = ScriptedEngine(tiny_nemo_gguf, [[tk.TOOL_CALLS, *tekken.encode(json.dumps(call))],
                                             tekken.encode("Hello again.")], stop_after=4)
    history = History(tmp_path / "chat.db")
    service = ChatService(history, engine)
    settings = Settings(model=str(tiny_nemo_gguf), tools="calculator")
    final = list(service.send(None, "What is 6 times 7?", settings, CancelToken()))[-1]
    assert final.status == "stopped"
    roles = [m["role"] for m in history.messages(final.conversation_id)]
    assert "tool" not in roles, "a half-written call is never saved as a step"

    reply = list(service.send(final.conversation_id, "Hi", settings))[-1]
    assert reply.text == "Hello again." and reply.status == "complete"
    history.close()


def test_old_tool_rows_without_a_valid_name_are_left_out_of_the_prompt(tiny_nemo_gguf, tmp_path):
    tekken = tk.Tekken.from_gguf(tiny_nemo_gguf)
    engine = ScriptedEngine(tiny_nemo_gguf, [tekken.encode("Fine.")])
    history = History(tmp_path / "chat.db")
    conversation = history.create_conversation("old")
    history.add_message(conversation, "user", "What is 6 times 7?")
    broken = {"id": "abcDEF123", "name": "", "arguments": {}, "round": 1, "result": None,
              "error": "malformed tool call", "content": "{}"}
    history.add_message(conversation, "tool", json.dumps(broken))
    service = ChatService(history, engine)
    settings = Settings(model=str(tiny_nemo_gguf), tools="calculator")
    reply = list(service.send(conversation, "Go on", settings))[-1]
    assert reply.text == "Fine." and reply.status == "complete"
    tools = [t.schema() for t in service.enabled_tools(settings)]
    expected = [{"role": "user", "content": "What is 6 times 7?"}, {"role": "user", "content": "Go on"}]
    assert engine.prompts[0] == encode_chat(tekken, expected, tools)
    history.close()


def test_the_scripted_engine_honours_a_cancel_set_in_advance_as_the_real_engine_does(tiny_nemo_gguf):
    cancel = CancelToken()
    cancel.cancel()
    engine = LlamaEngine()
    engine.load(LoadOptions(str(tiny_nemo_gguf), n_ctx=256))
    real = engine.complete([tk.BOS, tk.INST, 22177, tk.INST_END], SamplingOptions(max_tokens=4, temperature=0), cancel)
    fake = ScriptedEngine(tiny_nemo_gguf, [[22177, 22177]]).complete([tk.BOS], SamplingOptions(), cancel)
    assert list(real.ids()) == list(fake.ids()) == [], "no token once the cancel is set"
    assert real.stats.stop_reason == fake.stats.stop_reason == "cancelled"
    engine.unload()
