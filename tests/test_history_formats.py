"""Reading conversation files from elsewhere (pure logic over JSON shaped as those apps write it)."""

from __future__ import annotations

import pytest

from app.base.errors import UserError
from app.services.history_formats import read_conversations


def chatgpt_node(key, parent, children, role=None, text=None, hidden=False):
    message = None
    if role:
        message = {"id": key, "author": {"role": role}, "create_time": 1700000000.5,
                   "content": {"content_type": "text", "parts": [text]},
                   "metadata": {"is_visually_hidden_from_conversation": hidden, "model_slug": "gpt-4o"}}
    return {"id": key, "message": message, "parent": parent, "children": children}


CHATGPT = [{
    "id": "c-1", "title": "Paris trip", "create_time": 1700000000.0, "current_node": "a2",
    "mapping": {
        "root": chatgpt_node("root", None, ["sys"]),
        "sys": chatgpt_node("sys", "root", ["u1", "u2"], "system", "", hidden=True),
        "u1": chatgpt_node("u1", "sys", ["a1"], "user", "Plan a day in Paris"),
        "a1": chatgpt_node("a1", "u1", [], "assistant", "Start at the Louvre."),
        "u2": chatgpt_node("u2", "sys", ["a2"], "user", "Plan a day in Lyon"),  # an edit: a sibling branch
        "a2": chatgpt_node("a2", "u2", [], "assistant", "Start at Fourvière."),
    },
}]


def test_chatgpt_keeps_every_branch_and_the_one_shown():
    [conversation] = read_conversations(CHATGPT, "conversations.json").conversations
    by_key = {m.key: m for m in conversation.messages}
    assert set(by_key) == {"u1", "a1", "u2", "a2"}, "the hidden system node and the root are left out"
    assert by_key["u1"].parent is None and by_key["u2"].parent is None, "both edits are roots of their branch"
    assert by_key["a2"].parent == "u2" and conversation.current == "a2"
    assert conversation.title == "Paris trip" and conversation.source == "chatgpt:c-1"


def test_open_webui_reads_its_history_tree():
    export = [{"id": "w-1", "title": "Hola", "created_at": 1700000000, "chat": {"history": {"currentId": "m3", "messages": {
        "m1": {"id": "m1", "parentId": None, "role": "user", "content": "¿Qué tal?", "timestamp": 1700000001},
        "m2": {"id": "m2", "parentId": "m1", "role": "assistant", "content": "Bien.", "model": "llama3"},
        "m3": {"id": "m3", "parentId": "m1", "role": "assistant", "content": "Muy bien.", "model": "llama3"},
    }}}}]
    [conversation] = read_conversations(export, "chat-export.json").conversations
    assert [(m.key, m.parent) for m in conversation.messages] == [("m1", None), ("m2", "m1"), ("m3", "m1")]
    assert conversation.current == "m3" and conversation.messages[1].model == "llama3"


def test_openai_messages_one_object_or_a_list():
    one = {"title": "Math", "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
    [conversation] = read_conversations(one, "one.json").conversations
    assert [(m.role, m.content, m.parent) for m in conversation.messages] == [("user", "2+2?", None),
                                                                             ("assistant", "4", "0")]
    parsed = read_conversations([one, {"messages": [{"role": "user", "content": [{"type": "text", "text": "日本語"}]},
                                                    {"role": "robot", "content": "?"}]}], "many.json")
    assert [c.title for c in parsed.conversations] == ["Math", "日本語"]
    assert [str(note) for note in parsed.skipped] == ["conversation 2, message 2: no text or an unknown role"]
    assert parsed.conversations[0].source == read_conversations(one, "again.json").conversations[0].source


@pytest.mark.parametrize("data, problem", [
    ({"hello": 1}, "not a conversation file"),
    ([1, 2], "not a conversation file"),
    ({"format": "nemo-chat", "version": 9, "conversations": []}, "version 9"),
    ({"format": "nemo-chat", "version": 1, "conversations": {}}, '"conversations" must be a list'),
])
def test_a_file_of_another_kind_is_refused_in_one_line(data, problem):
    with pytest.raises(UserError, match=problem) as refused:
        read_conversations(data, "mystery.json")
    assert str(refused.value).startswith("mystery.json: ") and "\n" not in str(refused.value)


# -- issue 19: linear trees, tool steps and documents from elsewhere ------------------------------------
def test_a_tree_listed_children_first_comes_out_parents_first_and_a_cycle_is_left_out():
    mapping = {key: node for key, node in reversed(list(CHATGPT[0]["mapping"].items()))}
    mapping["x"] = chatgpt_node("x", "y", ["y"], "user", "in a cycle")
    mapping["y"] = chatgpt_node("y", "x", ["x"], "assistant", "in a cycle too")
    [conversation] = read_conversations([{**CHATGPT[0], "mapping": mapping}], "reversed.json").conversations
    order = [m.key for m in conversation.messages]
    assert sorted(order) == ["a1", "a2", "u1", "u2"]
    assert order.index("u1") < order.index("a1") and order.index("u2") < order.index("a2")
    assert {m.key: m.parent for m in conversation.messages} == {"u1": None, "a1": "u1", "u2": None, "a2": "u2"}


def test_chatgpt_code_calls_and_their_output_become_tool_steps():
    import json

    call = chatgpt_node("c1", "u1", ["r1"], "assistant", None)
    call["message"]["content"] = {"content_type": "code", "language": "python", "text": "print(6*7)"}
    call["message"]["recipient"] = "python"
    result = chatgpt_node("r1", "c1", ["a1"], "tool", None)
    result["message"]["author"]["name"] = "python"
    result["message"]["content"] = {"content_type": "execution_output", "text": "42"}
    mapping = {"u1": chatgpt_node("u1", None, ["c1"], "user", "6*7?"), "c1": call, "r1": result,
               "a1": chatgpt_node("a1", "r1", [], "assistant", "42.")}
    [conversation] = read_conversations([{"id": "c-2", "mapping": mapping}], "code.json").conversations
    assert [(m.key, m.role, m.parent) for m in conversation.messages] == [
        ("u1", "user", None), ("r1", "tool", "u1"), ("a1", "assistant", "r1")]
    step = json.loads(conversation.messages[1].content)
    assert (step["name"], step["arguments"], step["result"], len(step["id"])) == ("python", "print(6*7)", "42", 9)


def test_a_document_or_tool_row_that_is_not_a_record_is_kept_readable():
    import json

    ours = {"format": "nemo-chat", "version": 1, "conversations": [{"title": "t", "messages": [
        {"id": 1, "parent": None, "role": "document", "content": "just text"},
        {"id": 2, "parent": 1, "role": "document", "content": json.dumps({"document_id": 3, "title": "A", "note": "n"})},
        {"id": 3, "parent": 2, "role": "tool", "content": "plain result"}]}]}
    [conversation] = read_conversations(ours, "ours.json").conversations
    assert [m.role for m in conversation.messages] == ["user", "document", "tool"]
    assert json.loads(conversation.messages[1].content)["text"] == "n"
    assert json.loads(conversation.messages[2].content)["result"] == "plain result"
