"""Below the faces nothing writes a sentence for a person (GUIDE.md §2): errors, plan explanations,
notes and progress lines carry a message key of `app/faces/locales` and its values, and the faces
word them; the command line's faces (app/faces/cli*.py, progress.py, web_guard.py) word what they
print from the same keys.

The scan covers every module of app/services, app/base, app/storage, app/documents, app/nemo and
app/engine (those that say anything), app/history.py and app/convert_gguf.py. In them it fails on:
- a `UserError`/`NoRoom`/`Message` (or a subclass defined in the module) whose first argument is
  not a key of en.json (a sentence, an f-string, a variable), unless it passes a key on (a name
  ending in `key`: `message.key`, `self.resume_key`);
- a string literal with words among such a call's values (`reason="no GPU"`);
- a string literal with words assigned (`=`, `+=`) to a name that carries a message to a person
  (`reason`, `sentence`, `advice`, `explanation`, `note`, `message`, `why`, `line`), or added to a list
  of them (`notes`, `notices`, `warnings`, `skipped`, `problems`, `parts`: `append`, `extend`, `+=`);
- a string literal with words given to a parameter or a record's field that names something to a
  person (`title`, `name`, `source`, `label`) of a function or dataclass of the scanned modules
  (`Gpu(f"{gib} GiB GPU", …)`, `create_conversation(title="New chat")`), or its default there;
- a string literal with words returned by a function that words something (`describe…`,
  `format_…`, `reference`, `…_note`, `…_notes`, `…_line`, `…_label`, `…_labels`, `…_choices`), or
  by a function (of any scanned module) whose result such a name, list, parameter or function's
  result is given (`notices = [key_in_clear(url)]`, `describe_gguf`'s `template_kind(…)`).
In the command line's faces it fails on the same, and on a string literal with words printed
(`print`, `write`) or given to the progress bar (`follow`): they speak from the locale files too.
A key is no sentence, nor is a single name (`"assistant"`, `"tokenizer.ggml.model"`, `"server:/tokenize"`)
or a regular expression. Prompts for the model, log lines, SQL and the API's protocol errors (English, as
OpenAI's) are no sentences for a person here and pass.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from test_i18n import _has_words

from app.base.errors import NoRoom, UserError
from app.base.messages import Message
from app.faces.locale_text import CATALOG, LANGUAGES, text, words

ROOT = Path(__file__).resolve().parent.parent
BELOW_THE_FACES = ["app/history.py", "app/convert_gguf.py", *(
    str(p.relative_to(ROOT)) for folder in ("app/services", "app/base", "app/storage", "app/documents", "app/nemo",
                                            "app/engine") for p in sorted((ROOT / folder).glob("*.py")))]
CLI_FACES = ["app/faces/cli.py", *(f"app/faces/{p.name}" for p in sorted((ROOT / "app/faces").glob("cli_*.py"))),
             "app/faces/progress.py", "app/faces/web_guard.py"]
CONVERTED = BELOW_THE_FACES + CLI_FACES
SAYS = {"UserError", "NoRoom", "Message"}
CARRIERS = {"reason", "sentence", "advice", "explanation", "note", "message", "why", "line"}
LISTS = {"notes", "notices", "warnings", "skipped", "problems", "parts"}
FENCE = re.compile(r"```\w*")  # a Markdown code fence and its language ("```json"): no words
IDENTIFIER = re.compile(r"^[\w.{}:/-]*$")  # 'assistant', 'tokenizer.ggml.model', 'chatgpt:{}': names, no sentences
NAMING = {"title", "name", "source", "label"}  # a parameter or a record's field that names something to a person
WORDING = re.compile(r"^(describe|format_|reference$)|_(note|notes|line|label|labels|choices)$")  # they word something
PRINTS = {"print", "write", "follow"}  # what the command line's faces show (follow: its title)


def _name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")


def _literals(node: ast.AST):
    """(line, text) of the string literals in an expression; an f-string as one text, {} for its fields."""
    if isinstance(node, ast.JoinedStr):
        yield node.lineno, "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.lineno, node.value
    elif isinstance(node, ast.Dict):  # a record's field names are no sentences
        for value in node.values:
            yield from _literals(value)
    elif isinstance(node, ast.Subscript):  # nor are `row["content"]`'s
        yield from _literals(node.value)
    elif isinstance(node, ast.Call) and _name(getattr(node.func, "value", None)) == "re":  # nor a pattern
        return
    else:
        for child in ast.iter_child_nodes(node):
            yield from _literals(child)


def signatures(sources: list[str]) -> dict[str, set[tuple[str, ...]]]:
    """The parameters of each function, method (less `self`) and class (a dataclass's fields, else
    its `__init__`'s) that the modules define, by name: which argument of a call names something."""
    found: dict[str, set[tuple[str, ...]]] = {}
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
                found.setdefault(node.name, set()).add(tuple(names[1:] if names[:1] in (["self"], ["cls"]) else names))
            elif isinstance(node, ast.ClassDef) and any(_name(getattr(d, "func", d)) == "dataclass"
                                                        for d in node.decorator_list):
                found.setdefault(node.name, set()).add(tuple(
                    item.target.id for item in node.body if isinstance(item, ast.AnnAssign)
                    and isinstance(item.target, ast.Name)))
            elif isinstance(node, ast.ClassDef):
                for init in (item for item in node.body
                             if isinstance(item, ast.FunctionDef) and item.name == "__init__"):
                    names = [a.arg for a in (*init.args.posonlyargs, *init.args.args, *init.args.kwonlyargs)]
                    found.setdefault(node.name, set()).add(tuple(names[1:]))
    return found


def _named(node: ast.AST, known: dict[str, set[tuple[str, ...]]]) -> list[ast.AST]:
    """What a call gives to a parameter that names something to a person (`Gpu(f"{gib} GiB GPU", …)`,
    `create_conversation(title="New chat")`), or a function's default for such a parameter."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        positional = [*node.args.posonlyargs, *node.args.args]
        pairs = [*zip(positional[len(positional) - len(node.args.defaults):], node.args.defaults),
                 *zip(node.args.kwonlyargs, node.args.kw_defaults)]
        return [default for arg, default in pairs if default is not None and arg.arg in NAMING]
    if isinstance(node, ast.ClassDef) and node.name in known:  # a dataclass field's default
        return [item.value for item in node.body if isinstance(item, ast.AnnAssign) and item.value is not None
                and _name(item.target) in NAMING]
    if not isinstance(node, ast.Call) or _name(node.func) not in known:
        return []
    given = [arg for arg in node.args]
    return [*(arg for params in known[_name(node.func)] for param, arg in zip(params, given) if param in NAMING),
            *(k.value for k in node.keywords if k.arg in NAMING)]


def _carries(node: ast.AST) -> ast.AST | None:
    """What `node` gives to a name or list that carries words to a person (`reason = …`,
    `notes.append(…)`), else None."""
    if isinstance(node, ast.Assign) and any(_name(target) in CARRIERS | LISTS for target in node.targets):
        return node.value
    if isinstance(node, ast.AugAssign) and _name(node.target) in CARRIERS | LISTS:
        return node.value
    if isinstance(node, ast.Call) and _name(node.func) in ("append", "extend", "insert") \
            and _name(node.func.value) in LISTS:
        return ast.Tuple(elts=node.args)
    return None


def carried_calls(source: str, known: dict[str, set[tuple[str, ...]]] = {}) -> set[str]:  # noqa: B006
    """The functions whose result a module gives to a name or list that carries words (`notices =
    [key_in_clear(url)]`), to a parameter that names something (`known`: `signatures`) or returns
    from a function that words something (`describe_gguf`'s record): what they return is looked at
    as a sentence, wherever they are defined."""
    tree = ast.parse(source)
    given = [*(given for node in ast.walk(tree) if (given := _carries(node)) is not None),
             *(named for node in ast.walk(tree) for named in _named(node, known)),
             *(inner.value for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
               and WORDING.search(node.name) for inner in ast.walk(node)
               if isinstance(inner, ast.Return) and inner.value)]
    return {_name(call.func) for node in given for call in ast.walk(node) if isinstance(call, ast.Call)}


def sentences_in(source: str, face: bool = False, carried: set[str] = frozenset(),
                 known: dict[str, set[tuple[str, ...]]] = {}) -> list[tuple[int, str]]:  # noqa: B006
    """(line, text) of every sentence the module writes for a person (see the module's docstring);
    `face`: a command line face, whose printed literals count too; `carried`: the functions whose
    result other modules give to a carrier (`carried_calls`); `known`: the parameters of the
    functions and records of all of them (`signatures`)."""
    tree = ast.parse(source)
    carried = set(carried) | carried_calls(source, known)
    imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module in ("app.base.errors", "app.base.messages") for alias in node.names
                if alias.name in SAYS}  # `Message as Note` beside a module's own Message record
    defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
    base = imported | (SAYS & defined - {"Message"})  # a module's own `Message` record is no message
    classes = [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
               and (node.name in base or any(_name(base_class) in base for base_class in node.bases))]
    says = base | {node.name for node in classes}
    inits = {id(call) for node in classes for call in ast.walk(node) if isinstance(call, ast.Call)
             and _name(call.func) == "__init__" and isinstance(call.func.value, ast.Call)
             and _name(call.func.value.func) == "super"}  # what a UserError subclass passes up
    keys = CATALOG["en"]
    shown = lambda value: (_has_words(FENCE.sub("", value)) and value not in keys  # noqa: E731
                           and not IDENTIFIER.match(value))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (_name(node.func) in says or id(node) in inits):
            first, values = (node.args[0] if node.args else None), [*node.args[1:], *(k.value for k in node.keywords)]
            given_keys = list(_literals(first)) if first is not None else []
            if first is None:
                if _name(node.func) in base:  # a subclass may have its key built in
                    found.append((node.lineno, "<no message key>"))
            elif not _name(first).endswith("key"):  # a key passed on is fine; a literal must be a key (or a choice of keys)
                found += [(line, value) for line, value in given_keys if value not in keys] or (
                    [] if given_keys else [(node.lineno, f"<not a key: {ast.unparse(first)}>")])
            found += [(line, value) for given in values for line, value in _literals(given) if shown(value)]
        elif (given := _carries(node)) is not None:
            found += [(line, value) for line, value in _literals(given) if shown(value)]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (WORDING.search(node.name)
                                                                             or node.name in carried):
            found += [(line, value) for inner in ast.walk(node) if isinstance(inner, ast.Return) and inner.value
                      for line, value in _literals(inner.value) if shown(value)]
        elif face and isinstance(node, ast.Call) and _name(node.func) in PRINTS:
            shows = node.args[1:2] if _name(node.func) == "follow" else node.args  # follow(job, title, unit)
            found += [(line, value) for arg in shows for line, value in _literals(arg) if shown(value)]
    found += [(line, value) for node in ast.walk(tree) for named in _named(node, known)
              for line, value in _literals(named) if shown(value)]
    return sorted(set(found))


def test_the_scan_finds_sentences_built_below_the_faces():
    sample = '''from app.base.errors import NoRoom, UserError
from app.base.messages import Message
class Refused(UserError):
    def __init__(self, name):
        super().__init__(f"{name}: refused")
def check(name, size, exc, message):
    if size:
        raise UserError(f"{name}: {size:,} MB is too big")
    raise UserError("doc_empty", name=name)
    raise NoRoom("doc_over_upload_limit", name=name, mb=f"{size:,.1f}", limit_mb="a hundred")
    raise UserError(message)
    raise UserError(message.key, **message.values)
    raise UserError("plan_reason_cpu_build" if size else "no GPU")
    reason = Message("plan_reason_no_gpu") if size else "no NVIDIA GPU found"
    notes.append(f"{size} GiB exceed the free memory")
    return Message("no_such_key_here"), [f"{size:,}", "GiB"]
'''
    assert sentences_in(sample) == [
        (5, "{}: refused"), (8, "{}: {} MB is too big"), (10, "a hundred"), (11, "<not a key: message>"),
        (13, "no GPU"), (14, "no NVIDIA GPU found"), (15, "{} GiB exceed the free memory"), (16, "no_such_key_here")]
    assert sentences_in("class Message:\n    key: str\nMessage('a record', 'not a key')\n") == []  # a record
    more = '''def describe(self):
    return f"writing: {self.done} tokens"
def progress_note(update):
    return Message("progress_step", done=1, total=2)
def read(skipped, problems, where):
    skipped.append(f"{where}: no messages")
    skipped += [f"{where}: a circle"]
    problems.extend(["kept as it was"])
    line = "reading the prompt"
    line += f" · {where} left"
    print("download one with: nemo-chat models download NAME")
    follow(job, "reading the prompt", "tokens")
def in_clear(url):
    return f"{url} is plain http"
def load(url, notices):
    notices = [in_clear(url), in_the_other_module(url)]
    notices.append(f"{url} takes no token ids")
def language_choices(names):
    return [(f"{name} (less supported)", code) for code, name in names]
'''
    assert sentences_in(more) == [(2, "writing: {} tokens"), (6, "{}: no messages"), (7, "{}: a circle"),
                                  (8, "kept as it was"), (9, "reading the prompt"), (10, " · {} left"),
                                  (14, "{} is plain http"), (17, "{} takes no token ids"), (19, "{} (less supported)")]
    assert set(sentences_in(more, face=True)) - set(sentences_in(more)) == {
        (11, "download one with: nemo-chat models download NAME"), (12, "reading the prompt")}
    other = 'def in_the_other_module(url):\n    return f"{url} is far away"\n'
    assert carried_calls(more) >= {"in_clear", "in_the_other_module"}
    assert sentences_in(other) == [] and sentences_in(other, carried={"in_the_other_module"}) == [(2, "{} is far away")]
    named = '''@dataclass
class Gpu:
    name: str
    free: int
def vram_gpu(gib):
    return Gpu(f"{gib:g} GiB GPU", gib)
def create(title="New chat", by="message"):
    return Counter(by, source="tekken (estimate)"), Gpu(card_name, 1), Gpu(name=first_user(), free=2)
def first_user():
    return "Imported chat"
def reference(page):
    return f"pp. {page}-{page + 1}"
def kind(template):
    return f"a name only ({template})"
def describe_gguf(info):
    return {"template": kind(info)}
def export(rows):
    parts = [f"# {rows[0]}"]
    parts.append(body(rows[1]))
def body(row):
    return f"Attached **{row}**."
'''
    known = signatures([named, "class Counter:\n    def __init__(self, tokenize, source): ...\n"])
    assert sentences_in(named, known=known) == [
        (6, "{} GiB GPU"), (7, "New chat"), (8, "tekken (estimate)"), (10, "Imported chat"), (12, "pp. {}-{}"),
        (14, "a name only ({})"), (21, "Attached **{}**.")]


SOURCES = {module: (ROOT / module).read_text(encoding="utf-8") for module in CONVERTED}
KNOWN = signatures(list(SOURCES.values()))
CARRIED = set().union(*(carried_calls(source, KNOWN) for source in SOURCES.values()))


@pytest.mark.parametrize("module", CONVERTED)
def test_converted_modules_build_no_sentence_for_a_person(module):
    found = sentences_in(SOURCES[module], face=module in CLI_FACES, carried=CARRIED, known=KNOWN)
    assert found == [], f"{module}: sentences built in code, not message keys of app/faces/locales (line, text)"


def test_an_error_is_english_as_str_and_worded_in_each_language():
    error = UserError("doc_over_page_limit", name="big.pdf", pages="1,200", max_pages="1,000")
    assert str(error) == "big.pdf: 1,200 pages is over the 1,000-page limit (Settings → Documents)"
    assert words("ja", error) == "big.pdf：1,200 ページは上限の 1,000 ページを超えています（設定 → ドキュメント）"
    assert text("ar", "common_warning", message=error).startswith("⚠️ big.pdf: عدد الصفحات 1,200")
    nested = NoRoom("doc_unsupported_type", name="x", suffix=Message("doc_no_extension"))
    assert words("fr", nested) == ("x : type de fichier non pris en charge (sans extension) ; utilisez PDF, DOCX, "
                                   "HTML, Markdown ou texte brut")
    assert str(UserError("a sentence from code not yet converted")) == "a sentence from code not yet converted"
    assert str(UserError("doc_empty", wrong="values")) == "doc_empty"  # values that do not fit: never a crash
    assert Message.from_json(nested.message.to_json()) == nested.message


def _keys_used(module: str) -> set[str]:
    """The literal keys a module gives to what says something (UserError, Message and its aliases)
    or words it (`text`, `terminal_text`, `say`)."""
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"))
    says = SAYS | {"text", "terminal_text", "say"} | {alias.asname for node in ast.walk(tree)
                                                      if isinstance(node, ast.ImportFrom) for alias in node.names
                                                      if alias.name in SAYS and alias.asname}
    return {value for node in ast.walk(tree) if isinstance(node, ast.Call) and _name(node.func) in says
            for arg in node.args[:2] for _, value in _literals(arg) if re.fullmatch(r"[a-z]+_[a-z_.]+", value)}


def test_the_keys_used_exist():
    missing = {module: sorted(_keys_used(module) - set(CATALOG["en"])) for module in CONVERTED}
    assert {module: keys for module, keys in missing.items() if keys} == {}


SAME_WORDS = {("fr", "ask_sources"), ("fr", "import_where_conversation"),  # the same word in that language
              ("fr", "model_info_attention"), ("fr", "model_info_architecture"), ("it", "model_info_file"),
              ("es", "ask_tokens"), ("es", "translate_cut_at"), ("pt", "ask_tokens"), ("pt", "translate_cut_at"),
              ("es", "doc_reference_pages"), ("it", "doc_reference_pages"), ("pt", "doc_reference_pages")}  # pp.


@pytest.mark.parametrize("code", sorted(set(LANGUAGES) - {"en"}))
def test_every_message_key_is_translated(code):
    """The keys the converted modules use are not English copies (numbers, names and units aside)."""
    used = set().union(*(_keys_used(module) for module in CONVERTED)) & set(CATALOG["en"])
    assert len(used) > 100
    copied = sorted(key for key in used if CATALOG[code][key] == CATALOG["en"][key] and _has_words(CATALOG["en"][key])
                    and (code, key) not in SAME_WORDS)
    assert copied == [], f"{code}.json: English copied"


def test_the_command_line_speaks_the_terminal_language(model_path, home, monkeypatch, tmp_path):
    """`nemo-chat` words what the services say in `LANG`'s language when it is one of the 11, else English."""
    from conftest import run_cli

    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_MESSAGES", raising=False)
    missing = tmp_path / "nowhere.gguf"
    for lang, code in [("ja_JP.UTF-8", "ja"), ("ar_SA.UTF-8", "ar"), ("sv_SE.UTF-8", "en"), ("C.UTF-8", "en")]:
        monkeypatch.setenv("LANG", lang)
        refused = run_cli("plan", "--model", str(missing), home=home)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr == f"nemo-chat: {text(code, 'catalog_file_not_found', path=str(missing))}\n"
    monkeypatch.setenv("LANG", "ja_JP.UTF-8")
    plan = run_cli("plan", "--model", str(model_path), "--ctx", "2048", home=home)
    assert plan.returncode == 0, plan.stderr
    first = plan.stdout.splitlines()[0]
    assert first.startswith(f"{model_path.name}: ") and re.search("[\u3040-\u30ff\u4e00-\u9fff]", first), first
    assert "layers" not in first and "context" not in first, first


def test_names_headings_and_places_are_worded_by_the_faces(tmp_path, monkeypatch):
    """What the services name (a card given by its memory, a default title, a chat's roles in a
    Markdown export, a page range, a template that is only a name) is data or a key the faces word."""
    from app.engine.catalog import template_kind
    from app.engine.gpu_plan import vram_gpu
    from app.faces.chat_view import titled
    from app.faces.cli_models import template_text
    from app.faces.ui_ask import where
    from app.history import History
    from app.services.exchange import export_markdown
    from app.services.retrieval import Source

    assert str(vram_gpu(12).name) == "12 GiB GPU" and words("ja", vram_gpu(12).name) == "12 GiB の GPU"
    assert titled("", "de") == "Neuer Chat" and titled("Paris", "de") == "Paris"
    source = Source(1, 7, "ledger.pdf", 4, "", "the quote", True, 0, 6)
    assert where(source) == "ledger.pdf, pp. 4-6" and where(source, "ja") == "ledger.pdf、4～6 ページ"
    assert where(Source(1, 7, "ledger.pdf", 4, "", "q", True, 0, 4), "de") == "ledger.pdf, S. 4"
    assert where(Source(1, 7, "notes.txt", None, "", "q", True, 0)) == "notes.txt"
    assert template_kind("chatml") == "name-only" and template_kind("") == "none"
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    assert template_text({"chat_template": "name-only", "chat_template_name": "chatml"}) == (
        "un nom seulement ('chatml'), pas un modèle Jinja")
    history = History(tmp_path / "history.db")
    try:
        conversation = history.create_conversation()
        history.add_message(conversation, "user", "Bonjour")
        history.add_message(conversation, "assistant", "Salut", status="stopped")
        english = export_markdown(history, [conversation])
        french = export_markdown(history, [conversation], lambda said: words("fr", said))
    finally:
        history.close()
    assert english.startswith("# New chat\n") and "## You · " in english and "## Assistant · " in english
    assert english.count("(stopped)") == 1
    assert french.startswith("# Nouvelle conversation\n") and "## Vous · " in french and "(arrêté)" in french
