"""The OpenAI-compatible HTTP face: `/v1/models`, `/v1/chat/completions`, `/v1/completions`.

`api_app()` is a Starlette app over `OpenAIService`; `nemo-chat serve` runs it alone (behind the
same Host allow-list as the UI), `nemo-chat ui --api` mounts it at `/v1` on the UI's own port.
Each request runs in a worker thread with its own cancel token: a client that goes away cancels
its sequence at once. At most `engine.parallel + queue` requests are in flight; more get 429.
"""

from __future__ import annotations

import asyncio
import hmac
import threading
from typing import Iterator

from app.base.errors import UserError
from app.base.jobs import CancelToken
from app.base.logs import log_exception
from app.services.openai_api import ApiError, OpenAIService, ChunkWriter, as_event, parse_request, reply_json

API_KEY_ENV = "NEMO_CHAT_API_KEY"
QUEUE = 16  # requests that may wait for a sequence beyond those running


class _InFlight:
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


def _produce(deltas: Iterator, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """Worker thread: run the reply, hand each delta (then None, or the error) to the event loop."""
    try:
        for delta in deltas:
            loop.call_soon_threadsafe(queue.put_nowait, delta)
        loop.call_soon_threadsafe(queue.put_nowait, None)
    except BaseException as exc:  # handed over and answered as an error
        loop.call_soon_threadsafe(queue.put_nowait, exc)


def _as_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UserError):
        return ApiError(400, str(exc))
    log_exception("API request failed", exc)
    return ApiError(500, f"internal error: {type(exc).__name__} (details in the log)")


def api_app(service: OpenAIService, api_key: str | None = None, queue: int = QUEUE):
    """The Starlette app; with `api_key`, every route but `/health` needs `Authorization: Bearer`."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    in_flight = _InFlight(lambda: getattr(service.engine, "parallel", 1) + queue)

    def error(exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    def authorized(request: Request) -> bool:
        if api_key is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), api_key.encode())

    async def health(_: Request):
        return JSONResponse({"status": "ok", "model": service.engine.model_name if service.engine.loaded else None,
                             "requests_in_flight": in_flight.count})

    async def models(request: Request):
        if not authorized(request):
            return error(ApiError(401, "this server needs its API key: Authorization: Bearer KEY"))
        try:
            return JSONResponse({"object": "list", "data": await asyncio.to_thread(service.models)})
        except ApiError as exc:
            return error(exc)

    async def completions(request: Request, chat: bool):
        if not authorized(request):
            return error(ApiError(401, "this server needs its API key: Authorization: Bearer KEY"))
        if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "application/json":
            return error(ApiError(415, "send the request body as JSON, with Content-Type: application/json",
                                  code="unsupported_media_type"))
        try:
            body = await request.json()
        except ValueError:
            return error(ApiError(400, "the request body is not JSON"))
        cancel, loop, queue_ = CancelToken(), asyncio.get_running_loop(), asyncio.Queue()
        try:
            api_request = parse_request(body, chat)
            await asyncio.to_thread(service.check_model, api_request)
            in_flight.enter()
        except ApiError as exc:
            return error(exc)
        try:
            replies = await asyncio.to_thread(service.run, api_request, cancel)  # a refused prompt: 4xx here
        except BaseException as exc:
            in_flight.leave()
            return error(_as_api_error(exc))
        model = service.engine.model_name
        threading.Thread(target=_produce, args=(replies, loop, queue_), daemon=True).start()

        async def deltas():
            try:
                while (item := await queue_.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                cancel.cancel()  # the client went away, or the reply ended: the sequence is freed
                in_flight.leave()

        if api_request.stream:
            return StreamingResponse(_events(api_request, deltas(), chat, model), media_type="text/event-stream",
                                     headers={"cache-control": "no-cache"})
        try:
            collected = await _collect(deltas(), request)
        except BaseException as exc:
            return error(_as_api_error(exc))
        if collected is None:
            return JSONResponse({}, status_code=499)  # the client is gone; nobody reads this
        return JSONResponse(reply_json(api_request, collected, chat, model))

    async def chat_completions(request: Request):
        return await completions(request, chat=True)

    async def text_completions(request: Request):
        return await completions(request, chat=False)

    return Starlette(routes=[
        Route("/health", health), Route("/v1/models", models),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", text_completions, methods=["POST"]),
    ])


async def _collect(deltas, request) -> list | None:
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


async def _events(api_request, deltas, chat: bool, model: str):
    """Server-sent events: the chunks, an error event if the reply fails, then `[DONE]`."""
    writer = ChunkWriter(api_request, chat, model)
    try:
        async for delta in deltas:
            for chunk in writer.chunks(delta):
                yield as_event(chunk)
    except Exception as exc:
        yield as_event(_as_api_error(exc).body())
    yield as_event("[DONE]")


def model_names(services) -> list[str]:
    """The names a request's `model` may use: the catalog name or path in the settings, the file's
    name and its stem (`mistral-nemo`, `Mistral-NeMo-12B-Q4_K_M.gguf`, `Mistral-NeMo-12B-Q4_K_M`)."""
    from pathlib import Path

    file_name = services.engine.model_name
    names = [file_name, Path(file_name).stem, services.settings.model]
    return list(dict.fromkeys(n for n in names if n))


def api_service(services, keep_history: bool = False) -> OpenAIService:
    """The OpenAI service over a process's services (and its history when API chats are kept)."""
    return OpenAIService(lambda: services.engine, lambda: model_names(services),
                         services.history if keep_history else None, services.ensure_model)


class ApiServer:
    """`nemo-chat serve`: the API alone on HOST:PORT (uvicorn), behind the Host allow-list."""

    def __init__(self, services, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                 allow_hosts=(), keep_history: bool = False, queue: int = QUEUE, allow_origins=()) -> None:
        import uvicorn

        from app.faces.web_guard import is_loopback, web_guard

        if not is_loopback(host) and not api_key:
            raise UserError(f"--host {host or '0.0.0.0'} makes the API reachable from other machines: give "
                            f"--api-key KEY (or set {API_KEY_ENV}), or use --host 127.0.0.1")
        guard = web_guard(host, port, allow_hosts, extra_origins=allow_origins)
        app = api_app(api_service(services, keep_history), api_key, queue)
        self.url = f"http://{host}:{port}/v1"
        self.server = uvicorn.Server(uvicorn.Config(guard(app), host=host, port=port, log_level="warning",
                                                    timeout_graceful_shutdown=2))

    def run(self) -> None:
        """Serve until interrupted."""
        self.server.run()

    def start(self) -> "ApiServer":
        """Serve from a thread (tests, benchmarks); returns once it accepts connections."""
        import time

        self._thread = threading.Thread(target=self.server.run, daemon=True)
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise UserError(f"the API server could not start on {self.url}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)


class ApiMount:
    """ASGI middleware for `ui --api`: `/v1/...` goes to the API app, the rest to the UI (Gradio's
    own layers). It sits inside the UI's WebGuard, so the Host allow-list, the Origin check and the
    UI's token cover the API too."""

    def __init__(self, app, api) -> None:
        self.app, self.api = app, api

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        target = self.api if scope["type"] == "http" and (path == "/v1" or path.startswith("/v1/")) else self.app
        await target(scope, receive, send)
