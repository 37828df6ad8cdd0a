"""The layers hold: faces alone import gradio, the engine knows no SQLite, no import circles."""

import ast
from pathlib import Path

APP = Path(__file__).resolve().parent.parent / "app"
FACES = {"app.ui"} | {f"app.faces.{p.stem}" for p in (APP / "faces").glob("*.py")}
LAYERS = [("app.faces", "app.ui"), ("app.services",), ("app.documents",), ("app.engine", "app.runtime"),
          ("app.nemo", "app.convert_gguf"), ("app.storage", "app.history"), ("app.base",)]  # top to bottom


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Every module of the app and every module it imports (at the top or inside a function)."""
    found = {}
    for path in APP.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
                names |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[module_name(path)] = names
    return found


def app_modules(names: set[str], known: set[str]) -> set[str]:
    return {name for name in names if name in known}


def test_only_the_faces_import_gradio():
    offenders = sorted(m for m, names in imports().items()
                       if m not in FACES and any(n == "gradio" or n.startswith("gradio.") for n in names))
    assert offenders == []


def test_the_engine_imports_no_sqlite_code():
    engine = [m for m in imports() if m == "app.runtime" or m.startswith("app.engine")]
    assert "app.runtime" in engine
    for module in engine:
        names = imports()[module]
        assert not {n for n in names if n.split(".")[0] in ("sqlite3", "sqlite_utils")
                    or n.startswith(("app.storage", "app.history"))}, module


def test_llama_cpp_private_attributes_are_touched_in_the_llama_engine_only():
    for path in APP.rglob("*.py"):
        if module_name(path) == "app.engine.llama":
            continue
        text = path.read_text(encoding="utf-8")
        for private in ("._input_ids", "._ctx", "._model", "._llm"):
            assert private not in text, f"{module_name(path)} uses {private}"


def test_no_import_circles():
    graph = imports()
    known = set(graph)
    edges = {m: app_modules(names, known) - {m} for m, names in graph.items()}
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                raise AssertionError("import circle: " + " -> ".join(trail[trail.index(target):] + [module, target])
                                     if target in trail else f"{module} -> {target}")
            if target not in state:
                visit(target, trail + [module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


def test_imports_point_down_the_layers():
    """A module imports only its own layer or the layers below it (the house in GUIDE.md §2)."""
    def layer(module: str) -> int:
        return next(i for i, prefixes in enumerate(LAYERS) for prefix in prefixes
                    if module == prefix or module.startswith(prefix + "."))

    graph = imports()
    known = set(graph) - {"app"}
    upward = sorted(f"{m} -> {t}" for m, names in graph.items() if m != "app" and m != "app.__main__"
                    for t in app_modules(names, known) if layer(t) < layer(m))
    assert upward == []
