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
    assert parsed.skipped == ["conversation 2, message 2: no text or an unknown role"]
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
