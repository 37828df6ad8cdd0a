"""Counting tokens for a model on a server, and finding out whether it is a NeMo model.

Where the server can tokenize (vLLM and llama.cpp's server: `POST /tokenize`; llama-cpp-python's
server: `POST /extras/tokenize`), its own tokenizer counts, and the model is NeMo when the server's
ids of a probe text are Tekken's. A server that cannot tokenize (NIM, most hosted APIs) counts with
Tekken: exact for NeMo (told by its name, "nemo"), an estimate for other models. NeMo counts
locally (Tekken, no request); a server's ids are asked once per text and kept. No server known
here tokenizes a list of texts in one request (llama.cpp's server joins a list into one prompt),
so texts are not batched.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from app.engine.openai_http import ServerClient
from app.nemo.tekken import Tekken

PROBE = "Hello world, bonjour le monde: 1234."  # tokenized by the server and by Tekken
NOT_THERE = (400, 404, 405, 422, 501)  # what a server without the route answers
CACHED_TEXTS = 4096  # texts whose server ids are kept


@dataclass(frozen=True)
class ServerTokenizer:
    """How to count a served model's tokens; `tekken` when the model is NeMo."""

    tokenize: Callable[[str], list[int]]
    tekken: Tekken | None
    source: str  # a name: "tekken", "tekken-estimate" (not NeMo), "server:/tokenize" or "server:/extras/tokenize"

    @property
    def is_nemo(self) -> bool:
        return self.tekken is not None


def find_tokenizer(client: ServerClient, model: str) -> ServerTokenizer:
    """The server's tokenizer where it has one (checked against Tekken), else Tekken."""
    tekken = Tekken.default()
    server = _server_tokenize(client, model)
    if server is None:
        nemo = "nemo" in model.lower()
        return ServerTokenizer(tekken.encode, tekken if nemo else None, "tekken" if nemo else "tekken-estimate")
    tokenize, route = server
    if tokenize(PROBE) == tekken.encode(PROBE):  # NeMo: Tekken counts exactly, without a request
        return ServerTokenizer(tekken.encode, tekken, "tekken")
    return ServerTokenizer(tokenize, None, f"server:{route}")


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

            return remembered(tokenize), route
    return None


def remembered(tokenize: Callable[[str], list[int]], size: int = CACHED_TEXTS) -> Callable[[str], list[int]]:
    """`tokenize` asking the server once per text: the ids of the last `size` texts are kept (a
    summary counts each chunk when it packs them, when it reads them and in its prompts)."""
    kept: OrderedDict[str, tuple[int, ...]] = OrderedDict()
    lock = threading.Lock()

    def cached(text: str) -> list[int]:
        with lock:
            ids = kept.get(text)
            if ids is not None:
                kept.move_to_end(text)
                return list(ids)
        ids = tuple(tokenize(text))
        with lock:
            kept[text] = ids
            if len(kept) > size:
                kept.popitem(last=False)
        return list(ids)

    return cached
