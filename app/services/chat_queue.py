"""Each browser tab's messages, answered in the order they were sent, by one job per tab.

A message sent while a reply runs is stored at once (queued, `ChatService.post`) and answered
after that reply: nothing a person sends is dropped. The job waits for the model's turn like every
other request (the engine's first-come-first-served turns, with no time limit while the request
ahead is alive). Stop ends the reply being written, or its wait, and nothing else: the messages
queued behind it are answered next, in order; a queued message can be taken back (`take_back`).
A request that fails does not hold up the ones behind it. When the tab goes away (`close`), its
queued messages stay stored as unanswered messages (Retry answers them). When the last reply is
done, the model titles the conversations that still carry their first message's words.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

from app.base.config import Settings
from app.base.errors import UserError
from app.base.jobs import CancelToken, Job, JobRegistry, Progress, ProgressCallback
from app.services.chat import ChatService, ReplyUpdate
from app.services.titles import retitle, wants_title

KIND = "chat"  # the tab's job kind in the JobRegistry
REPLIES_DONE = "replies done"  # Progress.what once the job's replies are written (titles may follow)


@dataclass(frozen=True)
class _Request:
    """One reply to write: `start(cancel, progress)` streams it; `message_id` is the posted
    message it answers (released, unanswered, when the request is dropped)."""

    conversation_id: int
    start: Callable[[CancelToken, ProgressCallback], Iterator[ReplyUpdate]]
    message_id: int | None = None


class _Waiting:
    """The requests a job still has to answer and the stop of the one it answers now; closed once
    the job has taken the last one."""

    def __init__(self, first: _Request) -> None:
        self._items = deque([first])
        self._lock = threading.Lock()
        self._closed = False
        self._current: CancelToken | None = None

    def add(self, item: _Request) -> bool:
        """Queue behind the others; False when the job has ended (start a new one)."""
        with self._lock:
            if not self._closed:
                self._items.append(item)
            return not self._closed

    def take(self, job: CancelToken) -> tuple[_Request, CancelToken] | None:
        """The next request with its own stop (a child of the job's), or None (and closed)."""
        with self._lock:
            if self._items:
                self._current = job.child()
                return self._items.popleft(), self._current
            self._closed, self._current = True, None
            return None

    @property
    def open(self) -> bool:
        """Whether requests are still answered or waiting (not yet closed by the last `take`)."""
        with self._lock:
            return not self._closed

    def stop_current(self) -> bool:
        """Stop the request being answered; False when there is none."""
        with self._lock:
            current = self._current
        if current is None or current.cancelled:
            return False
        current.cancel()
        return True

    def withdraw(self, message_id: int) -> bool:
        """Take a posted message's request out of the queue; False when it is not waiting here."""
        with self._lock:
            for item in self._items:
                if item.message_id == message_id:
                    self._items.remove(item)
                    return True
            return False

    def close(self) -> list[_Request]:
        """Close and give back the requests that were never taken."""
        with self._lock:
            self._closed = True
            left = list(self._items)
            self._items.clear()
            return left


class TabReplies:
    """The reply job of each browser tab (session) and the requests it still has to answer:
    posted messages, Retry and Edit, in the order the person made them."""

    def __init__(self, chat: ChatService, jobs: JobRegistry) -> None:
        self.chat, self.jobs = chat, jobs
        self._waiting: dict[str, _Waiting] = {}
        self._lock = threading.Lock()

    def answer(self, session: str, message_id: int, settings: Settings) -> Job | None:
        """Have a posted message answered; the job started for it, or None when the tab's running
        job answers it after its current reply."""
        conversation_id = self.chat.history.message(message_id)["conversation_id"]
        return self._submit(session, _Request(conversation_id, lambda cancel, progress: self.chat.answer(
            message_id, settings, cancel, progress), message_id))

    def retry(self, session: str, conversation_id: int, settings: Settings) -> Job | None:
        """Answer the conversation's last message again (after the tab's running reply)."""
        return self._submit(session, _Request(conversation_id, lambda cancel, progress: self.chat.retry(
            conversation_id, settings, cancel)))

    def edit(self, session: str, conversation_id: int, message_id: int, text: str, settings: Settings) -> Job | None:
        """Replace a message of the person's and answer it again (after the tab's running reply)."""
        return self._submit(session, _Request(conversation_id, lambda cancel, progress: self.chat.edit(
            conversation_id, message_id, text, settings, cancel)))

    def running(self, session: str) -> Job | None:
        return self.jobs.running(session, KIND)

    def answering(self, session: str) -> bool:
        """Whether this tab has a reply being written or waiting to be: what Stop stops (the
        titles the job writes once the replies are done are not)."""
        with self._lock:
            waiting = self._waiting.get(session)
        return waiting is not None and waiting.open

    def stop(self, session: str) -> bool:
        """Stop the reply this tab's job is writing, or its wait for the model; the messages queued
        behind it are answered next. False when nothing was being answered."""
        with self._lock:
            waiting = self._waiting.get(session)
        return waiting is not None and waiting.stop_current()

    def take_back(self, session: str, message_id: int) -> bool:
        """Take back a message still queued in this tab: it is deleted, never answered. False when
        it is not waiting in this tab (its reply has begun, or another tab sent it)."""
        with self._lock:
            waiting = self._waiting.get(session)
        if waiting is None or not waiting.withdraw(message_id):
            return False
        self.chat.history.delete_message(message_id)
        return True

    def close(self, session: str) -> None:
        """The tab went away: stop its job; its queued messages stay stored, unanswered."""
        with self._lock:
            waiting = self._waiting.pop(session, None)
        self._drop(waiting.close() if waiting is not None else [])
        self.jobs.stop(session, KIND)

    def _submit(self, session: str, request: _Request) -> Job | None:
        with self._lock:
            waiting = self._waiting.get(session)
            if waiting is not None and waiting.add(request):
                return None
            waiting = self._waiting[session] = _Waiting(request)
        return self.jobs.start(session, KIND, lambda progress, cancel: self._answer_all(waiting, progress, cancel))

    def _drop(self, requests: list[_Request]) -> None:
        for request in requests:
            if request.message_id is not None:
                self.chat.release(request.message_id)

    def _answer_all(self, waiting: _Waiting, progress: ProgressCallback, cancel: CancelToken) -> Iterator[ReplyUpdate]:
        """Updates of each reply in turn; an update without a message id starts each one. A failed
        reply's error is raised once the others are answered. Then the model titles the
        conversations answered that still carry their first message's words."""
        answered: list[int] = []
        failure: UserError | None = None
        try:
            while not cancel.cancelled and (taken := waiting.take(cancel)) is not None:
                request, own_stop = taken
                yield ReplyUpdate(request.conversation_id, None, "")
                try:
                    yield from request.start(own_stop, progress)
                except UserError as exc:
                    failure = failure or exc
                    continue
                answered.append(request.conversation_id)
        finally:
            self._drop(waiting.close())
        progress(Progress(0, 0, REPLIES_DONE))  # the faces see that the replies are done
        for conversation_id in dict.fromkeys(answered):
            if not cancel.cancelled and wants_title(self.chat.history, conversation_id):
                retitle(self.chat.history, self.chat.engine, conversation_id, cancel)
        if failure is not None:
            raise failure
