"""Continuous batching: up to N sequences decoded together in one llama.cpp context.

One thread runs the loop. Each step puts into one `llama_batch` the next token of every sequence
that is generating and prompt chunks of sequences still reading their prompt, calls
`llama_decode` once, and samples each generating sequence from its own logits
(`llama_sampler_sample` at its index in the batch, through its own sampler chain). Each sequence
owns a slot: a sequence id in the context with its own K/V cells. A sequence sends its caller
events through a queue; a finished or stopped one gives its slot back, and the slot's cells keep
its tokens for the next prompt that starts with them (prefix reuse).

Each slot's cells are their own stream (`kv_unified` off), and llama.cpp then computes in one pass
only the tokens of consecutive sequence ids listed in increasing order (`split_equal`,
sequential); every other run costs one more pass over the weights. So a step lists its tokens by
sequence id, and a new sequence takes a slot next to the busy ones unless another slot holds a
long enough prefix of its prompt (`GAP_COST`)."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field

import llama_cpp
import numpy as np
from llama_cpp.llama_grammar import JSON_GBNF

from app.base.jobs import CancelToken
from app.base.messages import Message
from app.engine.grammar import schema_grammar
from app.engine.kv_states import common_prefix
from app.engine.slot_states import SlotStates
from app.runtime import TokenLogprob

PROGRESS, TOKEN, END = "progress", "token", "end"  # the kinds of event a sequence receives
PENALTY_LAST_N = 64  # tokens the repeat penalty looks back over (llama-cpp-python's default)
# A gap between busy slots makes llama.cpp pass over the weights once more at every step of every
# sequence, for as long as they run: about what reading this many prompt tokens again costs.
GAP_COST = 256


def sampler_chain(sampling, vocab, prompt: list[int]):
    """A llama.cpp sampler chain for one sequence (`sampling`: app.runtime.SamplingOptions), as
    llama-cpp-python's `generate` builds it. Greedy at temperature 0; the seed is this sequence's own.
    `sampling.grammar == "json"` allows only JSON (the OpenAI API's `response_format`),
    `sampling.json_schema` only JSON that matches that schema (a grammar llama.cpp cannot parse
    raises ValueError); the logit biases and the penalties (repeat, frequency, presence) come
    before any choice is made, and the repeat penalty has read the end of `prompt`."""
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    grammar = schema_grammar(sampling.json_schema) if sampling.json_schema else (
        JSON_GBNF if sampling.grammar == "json" else None)
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = lambda sampler: llama_cpp.llama_sampler_chain_add(chain, sampler)
    if grammar is not None:
        constraint = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not constraint:
            llama_cpp.llama_sampler_free(chain)
            raise ValueError("llama.cpp could not parse the grammar of this schema")
        add(constraint)
    if sampling.logit_bias:
        biases = (llama_cpp.llama_logit_bias * len(sampling.logit_bias))(*sampling.logit_bias)
        add(llama_cpp.llama_sampler_init_logit_bias(n_vocab, len(sampling.logit_bias), biases))
    if _penalized(sampling):
        penalties = llama_cpp.llama_sampler_init_penalties(n_vocab, PENALTY_LAST_N, sampling.repeat_penalty,
                                                           sampling.frequency_penalty, sampling.presence_penalty)
        if sampling.repeat_penalty != 1.0:  # the penalty alone reads the prompt, never the grammar
            for token in prompt[-PENALTY_LAST_N:]:
                llama_cpp.llama_sampler_accept(penalties, token)
        add(penalties)
    if sampling.temperature <= 0.0:
        add(llama_cpp.llama_sampler_init_greedy())
        return chain
    seed = llama_cpp.LLAMA_DEFAULT_SEED if sampling.seed is None else sampling.seed & 0xFFFFFFFF
    add(llama_cpp.llama_sampler_init_top_k(sampling.top_k))
    add(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
    add(llama_cpp.llama_sampler_init_min_p(sampling.min_p, 1))
    add(llama_cpp.llama_sampler_init_temp(sampling.temperature))
    add(llama_cpp.llama_sampler_init_dist(seed))
    return chain


def _penalized(sampling) -> bool:
    return (sampling.repeat_penalty, sampling.frequency_penalty, sampling.presence_penalty) != (1.0, 0.0, 0.0)


def token_logprob(logits, token: int, top: int) -> TokenLogprob:
    """`token`'s log-probability under the model's own distribution (the raw logits' softmax, before
    any sampler) and the `top` most likely tokens, most likely first."""
    shifted = logits - logits.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    top = min(top, len(logprobs))
    best = np.argpartition(-logprobs, top - 1)[:top] if top else np.arange(0)
    best = best[np.argsort(-logprobs[best], kind="stable")]
    return TokenLogprob(token, float(logprobs[token]), tuple((int(i), float(logprobs[i])) for i in best))


@dataclass
class Slot:
    """One sequence id of the context and the tokens its cells hold (positions 0, 1, ...)."""

    seq_id: int
    held: list[int] = field(default_factory=list)
    busy: bool = False
    used_at: float = 0.0

    def keeps(self, prompt: list[int], runs: int) -> tuple[int, float]:
        """How good a home this slot is for `prompt`, in tokens not to read again: those it can
        reuse, less the cached ones it would throw away, less `GAP_COST` for each run of consecutive
        busy slots once it is taken (`runs`); then the one used longest ago (its cache is worth least)."""
        shared = common_prefix(self.held, prompt)
        return shared - (len(self.held) - shared) - GAP_COST * runs, -self.used_at


def busy_runs(busy: list[bool]) -> int:
    """Runs of consecutive busy slots: the passes llama.cpp makes for a step of all of them."""
    return sum(1 for i, taken in enumerate(busy) if taken and (i == 0 or not busy[i - 1]))


def choose_slot(slots: list[Slot], prompt: list[int]) -> Slot:
    """The free slot (there is one) that keeps `prompt` best (`Slot.keeps`)."""
    busy = [slot.busy for slot in slots]
    runs = lambda slot: busy_runs(busy[: slot.seq_id] + [True] + busy[slot.seq_id + 1 :])
    return max((slot for slot in slots if not slot.busy), key=lambda slot: slot.keeps(prompt, runs(slot)))


class Sequence:
    """One request: its prompt and sampling, where it stands, and the events for its caller."""

    def __init__(self, prompt: list[int], sampling, budget: int, cancel: CancelToken) -> None:
        self.prompt, self.sampling, self.budget, self.cancel = prompt, sampling, budget, cancel
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.closed = False  # the caller has gone
        self.slot: Slot | None = None
        self.reused = 0  # prompt tokens found in the slot's cells
        self.read = 0  # prompt tokens in the slot's cells now
        self.may_read = False  # the caller has seen the last progress report
        self.next_token: int | None = None  # sampled, to be decoded in the next step
        self.produced = 0
        self.admitted_at = 0.0
        self.sampler = None
        self.logprobs: list[TokenLogprob] = []  # one per token sent, when `sampling.logprobs` is set

    @property
    def stopped(self) -> bool:
        return self.closed or self.cancel.cancelled

    @property
    def reading(self) -> bool:
        return self.read < len(self.prompt)


class BatchRunner:
    """Runs sequences in the slots of one llama.cpp context, `len(slots)` at once.

    Callers never wait for each other's tokens: admission (first come, first served) happens
    before `submit`, so there is always a free slot for a submitted sequence."""

    def __init__(self, ctx, vocab, n_slots: int, n_batch: int, states: SlotStates | None = None) -> None:
        self._context, self._vocab, self._n_batch, self._states = ctx, vocab, n_batch, states
        self._memory = llama_cpp.llama_get_memory(ctx)
        self.slots = [Slot(i) for i in range(n_slots)]
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._pending: list[Sequence] = []
        self._live: list[Sequence] = []
        self._changed = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="llama-batch", daemon=True)
        self._thread.start()

    # -- what callers do -----------------------------------------------------------------------
    def submit(self, prompt: list[int], sampling, budget: int, cancel: CancelToken) -> Sequence:
        sequence = Sequence(prompt, sampling, budget, cancel)
        with self._changed:
            self._pending.append(sequence)
            self._changed.notify_all()
        return sequence

    def read_on(self, sequence: Sequence) -> None:
        """The caller has seen the last progress report: the next prompt chunk may be read."""
        with self._changed:
            sequence.may_read = True
            self._changed.notify_all()

    def close_sequence(self, sequence: Sequence) -> None:
        with self._changed:
            sequence.closed = True
            self._changed.notify_all()

    def forget(self) -> list[int]:
        """Forget what idle slots hold (their cells may be overwritten from outside); returns
        what slot 0 held."""
        with self._changed:
            kept = list(self.slots[0].held)
            for slot in self.slots:
                if not slot.busy:
                    slot.held = []
            return kept

    def hold(self, seq_id: int, ids: list[int]) -> None:
        """Record that the idle slot `seq_id` holds `ids` (written there from outside)."""
        with self._changed:
            if not self.slots[seq_id].busy:
                self.slots[seq_id].held = list(ids)

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self._thread.join()
        for sequence in self._pending + self._live:
            self._end(sequence, "cancelled")
        if self._states is not None:
            self._states.close(self.slots)
        llama_cpp.llama_batch_free(self._batch)

    # -- the loop ------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._changed:
                while not self._closing and not self._work_waiting():
                    self._changed.wait(0.1)
                if self._closing:
                    return
                self._retire_stopped()
                self._admit()
                step = self._fill_batch()
            if not step:
                continue
            try:
                self._decode(step)
            except Exception as exc:  # noqa: BLE001 (no caller may wait forever for a loop that died)
                with self._changed:
                    self._fail(step, Message("engine_decode_failed", error=str(exc)))

    def _work_waiting(self) -> bool:
        return bool(self._pending) or any(
            s.stopped or not s.reading or s.may_read for s in self._live)

    def _retire_stopped(self) -> None:
        for sequence in [s for s in self._live if s.stopped]:
            self._end(sequence, "cancelled")
        for sequence in [s for s in self._pending if s.stopped]:
            self._pending.remove(sequence)
            sequence.events.put((END, "cancelled", None))

    def _admit(self) -> None:
        while self._pending:
            if all(slot.busy for slot in self.slots):
                return
            sequence = self._pending.pop(0)
            try:
                sequence.sampler = sampler_chain(sequence.sampling, self._vocab, sequence.prompt)
            except ValueError as exc:  # a schema the grammar cannot hold: this request fails alone
                self._end(sequence, "error", str(exc))
                continue
            slot = choose_slot(self.slots, sequence.prompt)
            reuse = min(common_prefix(slot.held, sequence.prompt), len(sequence.prompt) - 1)
            if self._states is not None:
                self._states.leave(slot, reuse)
            if not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, reuse, -1):
                llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
                reuse = 0
            slot.held, slot.busy = slot.held[:reuse], True
            if self._states is not None:
                reuse = self._states.enter(slot, sequence.prompt, reuse, sequence.sampling.keep_state)
            sequence.slot, sequence.reused, sequence.read = slot, reuse, reuse
            sequence.admitted_at = time.perf_counter()
            self._live.append(sequence)
            sequence.events.put((PROGRESS, 0, len(sequence.prompt) - reuse))

    def _fill_batch(self) -> list[tuple[Sequence, list[int]]]:
        """This step's tokens: one for each generating sequence, then prompt chunks (first come,
        first served) up to the batch size; listed by sequence id."""
        step, room = [], self._n_batch
        for sequence in self._live:
            if not sequence.reading and sequence.next_token is not None:
                step.append((sequence, [sequence.next_token]))
                room -= 1
        for sequence in self._live:
            if sequence.reading and sequence.may_read and room > 0:
                chunk = sequence.prompt[sequence.read : sequence.read + room]
                step.append((sequence, chunk))
                sequence.may_read = False
                room -= len(chunk)
        return sorted(step, key=lambda entry: entry[0].slot.seq_id)

    def _decode(self, step: list[tuple[Sequence, list[int]]]) -> None:
        batch, i = self._batch, 0
        for sequence, tokens in step:
            start = len(sequence.slot.held)
            last = len(tokens) - 1
            wants_logits = not sequence.reading or sequence.read + len(tokens) == len(sequence.prompt)
            for offset, token in enumerate(tokens):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, start + offset, 1
                batch.seq_id[i][0] = sequence.slot.seq_id
                batch.logits[i] = wants_logits and offset == last
                i += 1
        batch.n_tokens = i
        status = llama_cpp.llama_decode(self._context, batch)
        with self._changed:
            if status != 0:
                self._fail(step, Message("engine_decode_refused", tokens=i, status=status))
                return
            index = 0
            for sequence, tokens in step:
                index += len(tokens)
                sequence.slot.held.extend(tokens)
                if sequence.reading:
                    sequence.read += len(tokens)
                    sequence.events.put((PROGRESS, sequence.read - sequence.reused, len(sequence.prompt) - sequence.reused))
                    if sequence.reading:
                        continue
                if not sequence.stopped:
                    self._sample(sequence, index - 1)

    def _sample(self, sequence: Sequence, index: int) -> None:
        token = llama_cpp.llama_sampler_sample(sequence.sampler, self._context, index)
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._end(sequence, "eos")
            return
        sequence.produced += 1
        if sequence.sampling.logprobs is not None:  # read before the event: the caller reads it after
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._context, index), (self._n_vocab,))
            sequence.logprobs.append(token_logprob(logits, token, sequence.sampling.logprobs))
        sequence.events.put((TOKEN, token, time.perf_counter()))
        if sequence.produced >= sequence.budget:
            self._end(sequence, "length")
        else:
            sequence.next_token = token

    def _fail(self, step, message: Message) -> None:
        for sequence, _ in step:
            llama_cpp.llama_memory_seq_rm(self._memory, sequence.slot.seq_id, -1, -1)
            sequence.slot.held = []
            self._end(sequence, "error", message)

    def _end(self, sequence: Sequence, reason: str, error: Message | None = None) -> None:
        """The sequence is over: its caller hears why, its slot is free (its cells stay cached)."""
        if sequence in self._live:
            self._live.remove(sequence)
        if sequence.slot is not None:
            sequence.slot.busy, sequence.slot.used_at = False, time.perf_counter()
        if sequence.sampler is not None:
            llama_cpp.llama_sampler_free(sequence.sampler)
            sequence.sampler = None
        sequence.events.put((END, reason, error))
