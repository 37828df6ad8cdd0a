"""Log-probabilities in the OpenAI API's two shapes: chat's `logprobs.content[]` entries
(token, logprob, bytes, top_logprobs) and the legacy completions' parallel lists."""

from __future__ import annotations

from typing import Callable

from app.runtime import TokenLogprob

MAX_TOP_LOGPROBS = 20  # chat's top_logprobs
LEGACY_MAX_LOGPROBS = 5  # completions' logprobs


def _token(token_id: int, logprob: float, token_bytes: Callable[[int], bytes]) -> dict:
    raw = token_bytes(token_id)
    return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}


def token_entries(logprobs: list[TokenLogprob], token_bytes: Callable[[int], bytes]) -> list[dict]:
    """Chat's entries: each token with its bytes and its top alternatives, most likely first."""
    return [{**_token(lp.token_id, lp.logprob, token_bytes),
             "top_logprobs": [_token(i, value, token_bytes) for i, value in lp.top]} for lp in logprobs]


class LegacyLogprobs:
    """Completions' shape (`tokens`, `token_logprobs`, `top_logprobs`, `text_offset`) from chat's
    entries; the text offsets run on from one call to the next (a stream's chunks)."""

    def __init__(self) -> None:
        self.offset = 0

    def shape(self, entries: list[dict]) -> dict:
        offsets = []
        for entry in entries:
            offsets.append(self.offset)
            self.offset += len(entry["token"])
        return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
                "text_offset": offsets}
