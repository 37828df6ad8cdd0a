"""Talking to an OpenAI-compatible server: JSON requests, server-sent event streams, one-line errors.

Every failure a user can meet (a refused connection, a timeout, 401/404/422/429/5xx, a server that
goes away mid-stream) becomes a `UserError` of one line that names the server. 429 and 503 are
retried with backoff (honouring `Retry-After`); nothing else is. A stream is closed at once when
its cancel token fires: the socket is shut down, so the server sees the client leave.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from typing import Iterable, Iterator
from urllib.parse import urlsplit

import httpx

from app.base.errors import UserError
from app.base.messages import Message
from app.base.jobs import CancelToken

RETRY_STATUSES = {429, 503}
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)  # waits before each retry of a 429/503; then the error is given
MAX_RETRY_AFTER_S = 30.0
MAX_BODY_BYTES = 32 * 2**20  # the most of one JSON answer read (a model list, a whole reply)
MAX_LINE_BYTES = 2**20  # the longest line of an event stream (one event)
ERROR_BYTES = 2**16  # the most of an error answer read for its message
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0  # longest silence from the server (a long prompt is read before the first token)
STATUS_KEYS = {status: f"remote_status_{status}" for status in (400, 401, 403, 404, 422, 429, 500, 502, 503, 504)}


class ServerRefused(UserError):
    """The server answered with an HTTP error; `status` is its code."""

    def __init__(self, key: str, http_status: int, **values) -> None:
        super().__init__(key, **values)
        self.status = http_status


def check_base_url(url: str) -> str:
    """The base URL without a trailing slash; it must be http(s) and end in /v1."""
    url = (url or "").strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or not parts.path.endswith("/v1"):
        raise UserError("remote_bad_url", url=url or Message("remote_the_server_url"))
    return url


def key_in_clear(url: str, key: str) -> Message | None:
    """A warning when `key` would travel unencrypted (http://) to another machine, else None."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not key or parts.scheme != "http" or loopback:
        return None
    return Message("remote_key_in_clear", url=url, host=host)


def capped_lines(chunks: Iterable[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[str]:
    """The lines of a byte stream (ending in \\n or \\r\\n), never holding more than `limit` bytes of
    one line: ValueError for a longer one."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if len(line) > limit:
                raise ValueError(f"a line of over {limit:,} bytes")
            yield line.rstrip(b"\r").decode("utf-8", "replace")
        if len(pending) > limit:
            raise ValueError(f"a line of over {limit:,} bytes")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")


def retry_delay(attempt: int, retry_after: str | None = None) -> float | None:
    """Seconds to wait before retry number `attempt` (0-based) of a 429/503, or None: give up.
    A `Retry-After` in seconds is honoured up to MAX_RETRY_AFTER_S."""
    if attempt >= len(RETRY_DELAYS_S):
        return None
    try:
        asked = float(retry_after) if retry_after else None
    except ValueError:
        asked = None
    return min(asked, MAX_RETRY_AFTER_S) if asked is not None and asked >= 0 else RETRY_DELAYS_S[attempt]


class ServerClient:
    """One server: its base URL (ending in /v1) and key; thread-safe, connections pooled."""

    def __init__(self, base_url: str, key: str = "", read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.base_url = check_base_url(base_url)
        self.root_url = self.base_url[: -len("/v1")]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        timeout = httpx.Timeout(read_timeout_s, connect=CONNECT_TIMEOUT_S)
        self._http = httpx.Client(headers=headers, timeout=timeout, trust_env=False)

    def get(self, path: str) -> dict:
        return self._json(self._send("GET", path, None))

    def post(self, path: str, body: dict, quiet_statuses: tuple[int, ...] = ()) -> dict | None:
        """POST JSON and return the answer; None when the status is one of `quiet_statuses`."""
        response = self._send("POST", path, body, quiet_statuses)
        if response.status_code in quiet_statuses:
            response.close()
            return None
        return self._json(response)

    def stream(self, path: str, body: dict, cancel: CancelToken) -> Iterator[dict]:
        """The events of a server-sent event stream, until `data: [DONE]`. Closing the generator,
        or the cancel token firing (even while the server is silent), closes the connection."""
        request = self._http.build_request("POST", self._url(path), json=body)
        response = self._with_retries(lambda: self._http.send(request, stream=True), cancel)
        if response is None:
            return
        done = threading.Event()
        watcher = threading.Thread(target=_shut_on_cancel, args=(response, cancel, done), daemon=True)
        watcher.start()
        try:
            for line in capped_lines(response.iter_bytes()):
                if not line.startswith("data:"):
                    continue  # comments, pings, event names
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    return
                event = json.loads(data)
                if isinstance(event, dict) and "error" in event:
                    raise UserError("remote_stopped_reply", url=self.base_url, detail=_error_text(event))
                yield event
            if not cancel.cancelled:
                raise UserError("remote_stream_closed", url=self.base_url)
        except (httpx.TransportError, json.JSONDecodeError) as exc:
            if not cancel.cancelled:
                raise self._transport_error(exc) from None
        except ValueError as exc:  # a line over the cap
            raise UserError("remote_bad_stream", url=self.base_url, detail=str(exc)) from None
        finally:
            done.set()
            response.close()

    # -- requests, retries and errors ------------------------------------------------------------
    def _url(self, path: str) -> str:
        return (self.root_url if path.startswith("/") else self.base_url + "/") + path

    def _send(self, method: str, path: str, body: dict | None, quiet_statuses: tuple[int, ...] = ()) -> httpx.Response:
        request = self._http.build_request(method, self._url(path), json=body)
        return self._with_retries(lambda: self._http.send(request, stream=True), CancelToken(), quiet_statuses)

    def _json(self, response: httpx.Response):
        body = self._read(response, MAX_BODY_BYTES)
        if body is None:
            raise UserError("remote_answer_too_big", url=self.base_url, mib=MAX_BODY_BYTES // 2**20)
        try:
            return json.loads(body)
        except ValueError:
            raise self._transport_error(json.JSONDecodeError("", "", 0)) from None

    def _read(self, response: httpx.Response, limit: int) -> bytes | None:
        """The body of a streamed response, at most `limit` bytes (None when it is longer); closed."""
        body = bytearray()
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > limit:
                    return None
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from None
        finally:
            response.close()
        return bytes(body)

    def _with_retries(self, send, cancel: CancelToken, quiet_statuses: tuple[int, ...] = ()) -> httpx.Response | None:
        """Send; retry 429/503 after `retry_delay`; raise a one-line error for any other failure.
        None when cancelled while waiting to retry."""
        attempt = 0
        while True:
            try:
                response = send()
            except httpx.TransportError as exc:
                raise self._transport_error(exc) from None
            if response.is_success or response.status_code in quiet_statuses:
                return response
            delay = retry_delay(attempt, response.headers.get("retry-after")) \
                if response.status_code in RETRY_STATUSES else None
            if delay is None:
                raise self._status_error(response)
            response.close()
            if cancel.wait(delay):
                return None
            attempt += 1

    def _status_error(self, response: httpx.Response) -> ServerRefused:
        detail = _error_text(_json_or_none(self._read(response, ERROR_BYTES) or b""))
        return ServerRefused(STATUS_KEYS.get(response.status_code, "remote_status_other"), response.status_code,
                             url=self.base_url, status=response.status_code,
                             detail=Message("remote_detail", detail=detail) if detail else "")

    def _transport_error(self, exc: Exception) -> UserError:
        if isinstance(exc, httpx.ConnectError):
            return UserError("remote_unreachable", url=self.base_url)
        if isinstance(exc, httpx.TimeoutException):
            return UserError("remote_timeout", url=self.base_url, error=type(exc).__name__)
        if isinstance(exc, json.JSONDecodeError):
            return UserError("remote_not_json", url=self.base_url)
        return UserError("remote_went_away", url=self.base_url, error=type(exc).__name__)

    def close(self) -> None:
        self._http.close()


def _shut_on_cancel(response: httpx.Response, cancel: CancelToken, done: threading.Event) -> None:
    """Shut the stream's socket when `cancel` fires before `done`: a blocked read returns at once
    and the server sees the client leave."""
    while not done.is_set():
        if cancel.wait(0.05):
            stream = response.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None and not done.is_set():
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed
            return


def _json_or_none(body: bytes):
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:200] or None


def _error_text(answer) -> str:
    """The message of an OpenAI-style error `{"error": {"message": ...}}`, FastAPI's `{"detail": ...}`, or text."""
    if isinstance(answer, dict):
        error = answer.get("error", answer.get("detail", answer.get("message")))
        if isinstance(error, dict):
            error = error.get("message") or error
        if isinstance(error, list) and error and isinstance(error[0], dict):  # pydantic validation errors
            error = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in error[:2])
        answer = error
    return " ".join(str(answer).split())[:300] if answer else ""
