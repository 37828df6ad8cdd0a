"""The OpenAI-compatible HTTP face: `/v1/models`, `/v1/chat/completions`, `/v1/completions`,
`/v1/embeddings`, and Anthropic's `/v1/messages` beside them (app/faces/anthropic_server.py).

`api_app()` is a Starlette app over `OpenAIService`; `nemo-chat serve` runs it alone (behind the
same Host allow-list as the UI), `nemo-chat ui --api` mounts it at `/v1` on the UI's own port.
Each reply runs in a worker thread (app/faces/api_replies.py): a client that goes away cancels its
sequence at once. At most `engine.parallel + queue` requests are in flight; more get 429.
"""

from __future__ import annotations

import asyncio
import threading

from app.base.errors import UserError
from app.faces.api_replies import InFlight, as_api_error, authorized, json_body, reply_response, start_reply
from app.services.embeddings_api import embeddings
from app.services.openai_api import ApiError, OpenAIService, ChunkWriter, as_event, parse_request, reply_json

API_KEY_ENV = "NEMO_CHAT_API_KEY"
QUEUE = 16  # requests that may wait for a sequence beyond those running
KEY_NEEDED = "this server needs its API key: Authorization: Bearer KEY (or x-api-key: KEY)"


def api_app(service: OpenAIService, api_key: str | None = None, queue: int = QUEUE):
    """The Starlette app; with `api_key`, every route but `/health` needs it (`Authorization:
    Bearer KEY` or `x-api-key: KEY`). Anthropic's Messages routes come from anthropic_server.py."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from app.faces.anthropic_server import anthropic_routes

    in_flight = InFlight(lambda: getattr(service.engine, "parallel", 1) + queue)

    def error(exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    async def health(_: Request):
        return JSONResponse({"status": "ok", "model": service.engine.model_name if service.engine.loaded else None,
                             "requests_in_flight": in_flight.count})

    async def models(request: Request):
        if not authorized(request, api_key):
            return error(ApiError(401, KEY_NEEDED))
        try:
            return JSONResponse({"object": "list", "data": await asyncio.to_thread(service.models)})
        except ApiError as exc:
            return error(exc)

    async def embed(request: Request):
        try:
            body = await json_body(request, api_key, KEY_NEEDED)
            in_flight.enter()
        except ApiError as exc:
            return error(exc)
        try:
            return JSONResponse(await asyncio.to_thread(embeddings, service, body))
        except Exception as exc:  # noqa: BLE001 (answered in OpenAI's error shape)
            return error(as_api_error(exc))
        finally:
            in_flight.leave()

    async def completions(request: Request, chat: bool):
        try:
            api_request = parse_request(await json_body(request, api_key, KEY_NEEDED), chat)
            await asyncio.to_thread(service.check_model, api_request)
            deltas = await start_reply(service, in_flight, api_request)
        except ApiError as exc:
            return error(exc)
        model = service.engine.model_name
        return await reply_response(request, deltas, api_request.stream,
                                    lambda deltas: _events(api_request, deltas, chat, model),
                                    lambda collected: reply_json(api_request, collected, chat, model), error)

    async def chat_completions(request: Request):
        return await completions(request, chat=True)

    async def text_completions(request: Request):
        return await completions(request, chat=False)

    return Starlette(routes=[
        Route("/health", health), Route("/v1/models", models),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", text_completions, methods=["POST"]),
        Route("/v1/embeddings", embed, methods=["POST"]),
        *anthropic_routes(service, api_key, in_flight),
    ])


async def _events(api_request, deltas, chat: bool, model: str):
    """Server-sent events: the chunks, an error event if the reply fails, then `[DONE]`."""
    writer = ChunkWriter(api_request, chat, model)
    try:
        async for delta in deltas:
            for chunk in writer.chunks(delta):
                yield as_event(chunk)
    except Exception as exc:
        yield as_event(as_api_error(exc).body())
    yield as_event("[DONE]")


def model_names(services) -> list[str]:
    """The names a request's `model` may use, short name first: the catalog name (`smollm2`,
    `nemo-q4_k_m`) or else the file's stem; then the stem, the file's name, and the name in the
    settings (a catalog name, or a server's served alias). Never a path: every client sees them."""
    from pathlib import Path

    from app.engine.catalog import short_name

    served = services.engine.model_name  # the file's name, or the model a server serves
    chosen = services.settings.model if not any(c in services.settings.model for c in "/\\") else ""
    names = [short_name(served), Path(served).stem if served.endswith(".gguf") else "", served, chosen,
             services.settings.remote_model if services.settings.remote.strip() else ""]
    return list(dict.fromkeys(n.strip() for n in names if n and n.strip()))


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
