"""A sequence slot's K/V cells to disk and back (app/engine/kv_states.py keeps the files).

When a slot that last served a prompt worth keeping (`SamplingOptions.keep_state`: a chat
conversation) moves on to another prompt, or the engine closes, its cells are saved; when such a
prompt arrives and a saved state shares more of it than the slot holds, that state is restored into
the slot and only the rest of the prompt is read. Runs in the batch loop's thread; files are written
beside it, in threads of their own.
"""

from __future__ import annotations

import ctypes
import threading

import llama_cpp

from app.engine.kv_states import KvStateStore

MIN_TOKENS = 64  # a shorter prompt is read again faster than its state is found, loaded and set


class SlotStates:
    """Saving and restoring the cells of one context's slots."""

    def __init__(self, ctx, store: KvStateStore) -> None:
        self._context, self.store = ctx, store
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._keep: set[int] = set()  # slots whose last prompt asked to be kept
        self._on_disk: dict[int, list[int]] = {}  # slot -> the ids of a saved state its cells start with
        self._writers: list[threading.Thread] = []

    def leave(self, slot, reuse: int) -> None:
        """The slot keeps only its first `reuse` tokens from now on: save what it holds first when
        that is worth keeping and not on disk already."""
        held = slot.held
        if slot.seq_id not in self._keep or reuse >= len(held) or len(held) < MIN_TOKENS:
            return
        on_disk = self._on_disk.get(slot.seq_id, [])
        if len(held) <= len(on_disk) and on_disk[: len(held)] == held:
            return
        size = llama_cpp.llama_state_seq_get_size(self._context, slot.seq_id)
        buffer = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(self._context, buffer, size, slot.seq_id)
        if written == 0:
            return
        ids = list(held)
        self._on_disk[slot.seq_id] = ids
        writer = threading.Thread(target=self._save, args=(ids, memoryview(buffer)[:written]),
                                  name="kv-state-save", daemon=True)
        self._writers = [w for w in self._writers if w.is_alive()] + [writer]
        writer.start()

    def _save(self, ids: list[int], data) -> None:
        """Write a state; a full disk or a file size limit only costs the saved re-read (logged)."""
        try:
            self.store.save(ids, data)
        except OSError as exc:
            from app.base.logs import log_notice

            log_notice(f"a conversation's K/V state was not saved ({exc})")

    def enter(self, slot, prompt: list[int], reuse: int, keep: bool) -> int:
        """A prompt takes the slot, whose cells hold its first `reuse` tokens: restore a saved state
        that holds more of it; returns how many prompt tokens the cells hold now."""
        self._keep.discard(slot.seq_id)
        if not keep:
            return reuse
        self._keep.add(slot.seq_id)
        if len(prompt) < MIN_TOKENS:
            return reuse
        saved, shared = self.store.best(prompt)
        shared = min(shared, len(prompt) - 1)
        if saved is None or shared <= reuse:
            return reuse
        data = self.store.load(saved)
        if data is None:
            return reuse
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if llama_cpp.llama_state_seq_set_data(self._context, buffer, len(data), slot.seq_id) == 0:
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
            slot.held = []
            self._on_disk.pop(slot.seq_id, None)
            return 0
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, shared, -1)
        slot.held = saved.ids[:shared]
        self._on_disk[slot.seq_id] = saved.ids
        return shared

    def close(self, slots) -> None:
        """The context is going away: save every slot worth keeping, and wait for the files."""
        for slot in slots:
            self.leave(slot, 0)
        for writer in self._writers:
            writer.join()
        self._writers = []
