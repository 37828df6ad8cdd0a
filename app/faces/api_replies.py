"""What every API route that writes a reply shares: the key check, the count of requests in
flight, and the reply run in a worker thread whose deltas reach the event loop.

Each reply has its own cancel token: a client that goes away cancels its sequence at once.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from typing import Any, AsyncIterator, Callable, Iterator

from app.base.errors import UserError
from app.base.jobs import CancelToken
from app.base.logs import log_exception
from app.services.openai_api import ApiError, ApiRequest, Delta, OpenAIService


def authorized(request, api_key: str | None) -> bool:
    """Whether the request carries the key: `Authorization: Bearer KEY` or `x-api-key: KEY`
    (Anthropic's clients); always when the server has no key."""
    if api_key is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        given = request.headers.get("x-api-key", "")
    return hmac.compare_digest(given.strip().encode(), api_key.encode())


async def json_body(request, api_key: str | None, key_needed: str) -> Any:
    """The request's JSON body, once its key is checked; ApiError (401; 415 unless sent as
    `application/json`; 400 if not JSON)."""
    if not authorized(request, api_key):
        raise ApiError(401, key_needed)
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
        raise ApiError(415, "send the request body as JSON, with Content-Type: application/json",
                       code="unsupported_media_type")
    try:
        return await request.json()
    except ValueError:
        raise ApiError(400, "the request body is not JSON") from None


class InFlight:
    """Counts requests in flight; refuses one more than the engine can run or queue."""

    def __init__(self, limit) -> None:
        self.limit, self.count, self._lock = limit, 0, threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self.count >= self.limit():
                raise ApiError(429, "every sequence is busy and the queue is full; try again shortly",
                               code="queue_full")
            self.count += 1

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


def as_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UserError):
        return ApiError(400, str(exc))
    log_exception("API request failed", exc)
    return ApiError(500, f"internal error: {type(exc).__name__} (details in the log)")


def _produce(deltas: Iterator, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """Worker thread: run the reply, hand each delta (then None, or the error) to the event loop."""
    try:
        for delta in deltas:
            loop.call_soon_threadsafe(queue.put_nowait, delta)
        loop.call_soon_threadsafe(queue.put_nowait, None)
    except BaseException as exc:  # handed over and answered as an error
        loop.call_soon_threadsafe(queue.put_nowait, exc)


async def start_reply(service: OpenAIService, in_flight: InFlight, api_request: ApiRequest) -> AsyncIterator[Delta]:
    """Start the reply (it counts as in flight until it ends) and run it in a worker thread; its
    deltas, as they come. A request the engine refuses raises ApiError here (a 4xx, before any
    byte is sent). Closing the iterator early (the client went away) cancels the reply."""
    cancel, loop, queue = CancelToken(), asyncio.get_running_loop(), asyncio.Queue()
    in_flight.enter()
    try:
        replies = await asyncio.to_thread(service.run, api_request, cancel)
    except BaseException as exc:
        in_flight.leave()
        raise as_api_error(exc) from None
    threading.Thread(target=_produce, args=(replies, loop, queue), daemon=True).start()

    async def deltas():
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancel.cancel()  # the client went away, or the reply ended: the sequence is freed
            in_flight.leave()

    return deltas()


async def collect(deltas: AsyncIterator[Delta], request) -> list[Delta] | None:
    """Every delta of a non-streamed reply; None (and the reply cancelled) if the client leaves."""
    collected, stream = [], deltas.__aiter__()
    try:
        while True:
            next_delta = asyncio.ensure_future(stream.__anext__())
            while not next_delta.done():
                await asyncio.wait([next_delta], timeout=0.25)
                if not next_delta.done() and await request.is_disconnected():
                    next_delta.cancel()
                    return None
            try:
                collected.append(next_delta.result())
            except StopAsyncIteration:
                return collected
    finally:
        await stream.aclose()


async def reply_response(request, deltas: AsyncIterator[Delta], stream: bool, events: Callable, whole: Callable,
                         error: Callable):
    """The reply as server-sent events (`events(deltas)` gives their bytes) or, not streamed, as one
    JSON body (`whole(deltas collected)`); a failure as `error(ApiError)`."""
    from starlette.responses import JSONResponse, StreamingResponse

    if stream:
        return StreamingResponse(events(deltas), media_type="text/event-stream", headers={"cache-control": "no-cache"})
    try:
        collected = await collect(deltas, request)
    except BaseException as exc:
        return error(as_api_error(exc))
    if collected is None:
        return JSONResponse({}, status_code=499)  # the client is gone; nobody reads this
    return JSONResponse(whole(collected))
