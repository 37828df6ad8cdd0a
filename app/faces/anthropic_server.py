"""Anthropic's Messages API over HTTP: `POST /v1/messages` (streamed or not) and
`POST /v1/messages/count_tokens`, beside the OpenAI routes, with the same key (`x-api-key` or
Bearer) and the same requests in flight; errors in Anthropic's shape."""

from __future__ import annotations

import asyncio

from app.faces.api_replies import InFlight, as_api_error, json_body, reply_response, start_reply
from app.services.anthropic_api import EventWriter, as_named_event, error_body, message_json, parse_messages
from app.services.openai_api import ApiError, OpenAIService

KEY_NEEDED = "this server needs its API key: x-api-key: KEY (or Authorization: Bearer KEY)"


def anthropic_routes(service: OpenAIService, api_key: str | None, in_flight: InFlight) -> list:
    """The Starlette routes of the Messages API."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def error(exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc), status_code=exc.status)

    async def checked(request: Request, count_only: bool):
        """The checked request and its prompt's length; raises ApiError."""
        api_request = parse_messages(await json_body(request, api_key, KEY_NEEDED), count_only)
        await asyncio.to_thread(service.check_model, api_request)
        prompt, _ = await asyncio.to_thread(service.prompt_ids, api_request)
        return api_request, len(prompt)

    async def count_tokens(request: Request):
        try:
            _, input_tokens = await checked(request, count_only=True)
        except ApiError as exc:
            return error(exc)
        return JSONResponse({"input_tokens": input_tokens})

    async def messages(request: Request):
        try:
            api_request, input_tokens = await checked(request, count_only=False)
            deltas = await start_reply(service, in_flight, api_request)
        except ApiError as exc:
            return error(exc)
        model = service.engine.model_name
        return await reply_response(request, deltas, api_request.stream,
                                    lambda deltas: _events(deltas, model, input_tokens),
                                    lambda collected: message_json(collected, model), error)

    return [Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", count_tokens, methods=["POST"])]


async def _events(deltas, model: str, input_tokens: int):
    """Anthropic's named events; an `error` event if the reply fails."""
    writer = EventWriter(model, input_tokens)
    for name, data in writer.start():
        yield as_named_event(name, data)
    try:
        async for delta in deltas:
            for name, data in writer.events(delta):
                yield as_named_event(name, data)
    except Exception as exc:
        yield as_named_event("error", error_body(as_api_error(exc)))
