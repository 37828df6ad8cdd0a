"""Counting tokens for a model on a server, and finding out whether it is a NeMo model.

Where the server can tokenize (vLLM and llama.cpp's server: `POST /tokenize`; llama-cpp-python's
server: `POST /extras/tokenize`), its own tokenizer counts, and the model is NeMo when the server's
ids of a probe text are Tekken's. A server that cannot tokenize (NIM, most hosted APIs) counts with
Tekken: exact for NeMo (told by its name, "nemo"), an estimate for other models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from app.engine.openai_http import ServerClient
from app.nemo.tekken import Tekken

PROBE = "Hello world, bonjour le monde: 1234."  # tokenized by the server and by Tekken
NOT_THERE = (400, 404, 405, 422, 501)  # what a server without the route answers


@dataclass(frozen=True)
class ServerTokenizer:
    """How to count a served model's tokens; `tekken` when the model is NeMo."""

    tokenize: Callable[[str], list[int]]
    tekken: Tekken | None
    source: str  # "tekken", "server /tokenize", "server /extras/tokenize" or "tekken (estimate)"

    @property
    def is_nemo(self) -> bool:
        return self.tekken is not None


def find_tokenizer(client: ServerClient, model: str) -> ServerTokenizer:
    """The server's tokenizer where it has one (checked against Tekken), else Tekken."""
    tekken = Tekken.default()
    server = _server_tokenize(client, model)
    if server is None:
        nemo = "nemo" in model.lower()
        return ServerTokenizer(tekken.encode, tekken if nemo else None, "tekken" if nemo else "tekken (estimate)")
    tokenize, route = server
    if tokenize(PROBE) == tekken.encode(PROBE):  # NeMo: Tekken counts exactly, without a request
        return ServerTokenizer(tekken.encode, tekken, "tekken")
    return ServerTokenizer(tokenize, None, f"server {route}")


def _server_tokenize(client: ServerClient, model: str) -> tuple[Callable[[str], list[int]], str] | None:
    """A function giving the server's ids of a text (without the BOS it adds), and its route."""
    routes = {  # vLLM reads "prompt", llama.cpp's server "content"; each ignores the other
        "/tokenize": lambda text: {"model": model, "prompt": text, "content": text, "add_special_tokens": False},
        "/extras/tokenize": lambda text: {"model": model, "input": text},
    }
    for route, body in routes.items():
        answer = client.post(route, body(""), quiet_statuses=NOT_THERE)
        if isinstance(answer, dict) and isinstance(answer.get("tokens"), list):
            prefix = answer["tokens"]  # what the server puts before any text (a BOS), to be taken off

            def tokenize(text: str, route=route, body=body, prefix=prefix) -> list[int]:
                ids = client.post(route, body(text))["tokens"]
                return ids[len(prefix):] if ids[: len(prefix)] == prefix else ids

            return tokenize, route
    return None
