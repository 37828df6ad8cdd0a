"""The OpenAI API's `/v1/embeddings`: one pooled vector per input, from the loaded model.

`input` is a string, a list of strings, a list of token ids or a list of such lists; vectors
come as float lists or, with `encoding_format: "base64"`, as little-endian float32 bytes in
base64 (what the openai SDK asks for by default). Both carry the same float32 numbers.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from app.base.errors import UserError
from app.runtime import SamplingOptions
from app.services.openai_api import ApiError, ApiRequest, OpenAIService

MAX_INPUTS = 256  # inputs in one request


def _inputs(body: dict) -> list[str | list[int]]:
    given = body.get("input")
    if isinstance(given, str) or _is_ids(given):
        given = [given]
    if not isinstance(given, list) or not given or len(given) > MAX_INPUTS \
            or not all((isinstance(item, str) and item) or _is_ids(item) for item in given):
        raise ApiError(400, "input must be a non-empty string, a list of token ids, or a list of up to "
                       f"{MAX_INPUTS} of either", "input")
    return given


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value)


def embeddings(service: OpenAIService, body: Any) -> dict:
    """The response body for a `/v1/embeddings` request."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    inputs = _inputs(body)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(400, 'encoding_format must be "float" or "base64"', "encoding_format")
    service.check_model(ApiRequest(model=str(body.get("model") or ""), sampling=SamplingOptions()))
    engine = service.engine
    ids = [service.completion_prompt(item) for item in inputs]
    try:
        vectors = engine.embed(ids)
    except UserError as exc:
        raise ApiError(400, str(exc), "input") from None
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != len(vectors[0]):
        raise ApiError(400, f"dimensions must be {len(vectors[0])} (the model's own) or left out", "dimensions")
    tokens = sum(len(i) for i in ids)
    return {"object": "list", "model": engine.model_name,
            "data": [{"object": "embedding", "index": n, "embedding": _encoded(vector, encoding)}
                     for n, vector in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    numbers = np.asarray(vector, dtype="<f4")
    if encoding == "base64":
        return base64.b64encode(numbers.tobytes()).decode("ascii")
    return numbers.tolist()
