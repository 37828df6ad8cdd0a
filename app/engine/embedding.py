"""Embeddings from a loaded model: a second llama.cpp context on the same weights, in embedding
mode with mean pooling (the generation context keeps serving completions meanwhile).

Each input is decoded alone in a cleared context, so an input's vector does not depend on what
else was asked with it; vectors are scaled to unit length, as OpenAI's are.
"""

from __future__ import annotations

import math
import threading

import llama_cpp

from app.base.errors import UserError

EMBED_CTX = 2048  # tokens an input may have (at most the model's context)


class Embedder:
    """An embedding context on `model` (a llama_model pointer), `n_ctx` tokens an input."""

    def __init__(self, model, n_ctx: int, n_threads: int) -> None:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = n_ctx  # a pooled input is one micro-batch
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = n_threads
        params.embeddings = True
        params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_MEAN
        self._context = llama_cpp.llama_init_from_model(model, params)
        if not self._context:
            raise UserError("engine_no_embedding_context")
        self.n_ctx, self._n_embd = n_ctx, llama_cpp.llama_model_n_embd(model)
        self._memory = llama_cpp.llama_get_memory(self._context)
        self._batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)
        self._lock = threading.Lock()

    def embed(self, ids: list[int]) -> list[float]:
        """The mean of the last layer's states over `ids`, of unit length."""
        if not ids:
            raise UserError("engine_embed_empty")
        if len(ids) > self.n_ctx:
            raise UserError("engine_embed_too_long", tokens=f"{len(ids):,}", n_ctx=f"{self.n_ctx:,}")
        with self._lock:
            llama_cpp.llama_memory_clear(self._memory, True)
            batch = self._batch
            for position, token in enumerate(ids):
                batch.token[position], batch.pos[position], batch.n_seq_id[position] = token, position, 1
                batch.seq_id[position][0] = 0
                batch.logits[position] = True
            batch.n_tokens = len(ids)
            status = llama_cpp.llama_decode(self._context, batch)
            if status != 0:
                raise UserError("engine_embed_failed", tokens=len(ids), status=status)
            pooled = llama_cpp.llama_get_embeddings_seq(self._context, 0)
            vector = [float(pooled[i]) for i in range(self._n_embd)]
        norm = math.sqrt(sum(x * x for x in vector)) or 1.0
        return [x / norm for x in vector]

    def close(self) -> None:
        with self._lock:
            llama_cpp.llama_batch_free(self._batch)
            llama_cpp.llama_free(self._context)
