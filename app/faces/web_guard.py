"""The web face's guard: which `Host` names are served, who may call, what the page may load.

`web_guard()` puts an app behind `WebGuard`, the outermost ASGI layer (on every route, HTTP and
websocket; for Gradio through `guarded_gradio_app()`): a `Host` outside the allow-list gets 421 (DNS
rebinding), a page of another site 403 (its `Origin`), a path that would make Gradio fetch another
server 403, a missing token 401 (when the app has one), and every response carries the
Content-Security-Policy and frame headers below. `remote_images_as_links()` turns images that would load from other servers into
links before any text reaches the page.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import html
import ipaddress
import os
import re
from urllib.parse import unquote

from app.base.errors import UserError

TOKEN_ENV = "NEMO_CHAT_TOKEN"
HOSTS_ENV = "NEMO_CHAT_ALLOWED_HOSTS"
ORIGINS_ENV = "NEMO_CHAT_ALLOWED_ORIGINS"
USER = "nemo"  # the user name of HTTP Basic auth; the password is the token
MIN_TOKEN_CHARS = 16
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
WILDCARDS = ("0.0.0.0", "::", "")
DRAIN_LIMIT = 2**20  # bytes of a refused request's body read before answering

# Only this origin. Gradio 6 itself needs: inline <script> (its config) and inline styles, hence
# 'unsafe-inline'; `new Function` in gr.HTML (its templates), hence 'unsafe-eval' (measured in
# Chromium: without it the Documents progress box shows an error instead of its HTML).
CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "media-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "frame-src 'none'",
    "frame-ancestors 'none'",
    "base-uri 'self'",
    "form-action 'self'",
])
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_SECURITY_NAMES = {name for name, _ in SECURITY_HEADERS}


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP literals (127.0.0.0/8, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def read_token(token_file: str | None = None) -> str | None:
    """The access token: the first line of `token_file`, else $NEMO_CHAT_TOKEN, else None."""
    if token_file is None:
        token = os.environ.get(TOKEN_ENV, "").strip()
        source = f"${TOKEN_ENV}"
        if not token:
            return None
    else:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.readline().strip()
        except OSError as exc:
            raise UserError("guard_token_file_unreadable", name=token_file, reason=exc.strerror) from None
        except UnicodeDecodeError:
            raise UserError("import_not_utf8", name=token_file) from None
        source = token_file
    if len(token) < MIN_TOKEN_CHARS:
        raise UserError("guard_token_too_short", source=source, chars=MIN_TOKEN_CHARS)
    return token


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token."""
    if not is_loopback(host) and not token:
        raise UserError("guard_token_needed", host=host or "0.0.0.0", env=TOKEN_ENV, chars=MIN_TOKEN_CHARS)


def allowed_hosts(bind: str, port: int, extra=()) -> frozenset[str]:
    """The `Host` header values served: the bind's names (loopback: localhost, 127.0.0.1, [::1])
    and the `extra` names ($NEMO_CHAT_ALLOWED_HOSTS too), each bare or with the served port.
    An extra name written with its own port (`name:8000`) is served with that port only."""
    names = set(LOOPBACK_NAMES) if is_loopback(bind) or bind in WILDCARDS else set()
    if bind not in WILDCARDS:
        names.add(_bracketed(bind.lower()))
    hosts = set()
    for name in [*names, *extra, *os.environ.get(HOSTS_ENV, "").split(",")]:
        name = _bracketed(name.strip().lower())
        if not name:
            continue
        if re.search(r"(^[^:]+|\]):\d+$", name):  # has its own port
            hosts.add(name)
        else:
            hosts |= {name, f"{name}:{port}"}
    return frozenset(hosts)


def _bracketed(name: str) -> str:
    """IPv6 literals as they appear in a Host header: `[::1]`."""
    return f"[{name}]" if name.count(":") > 1 and not name.startswith("[") else name


def _is_ip_host(value: str, port: int) -> bool:
    """True for an IP literal, bare or with the served port (`10.0.0.7:7860`, `[fe80::1]`)."""
    match = re.fullmatch(r"(\[[0-9a-f:.]+\]|[0-9.]+)(?::(\d+))?", value)
    if not match or match[2] not in (None, str(port)):
        return False
    try:
        ipaddress.ip_address(match[1].strip("[]"))
    except ValueError:
        return False
    return True


class WebGuard:
    """Pure ASGI middleware, the outermost layer: Host allow-list (421), Origin check (403), no
    fetching through the app's proxy (403), optional token (401), security headers, and CORS
    headers only for the origins the user allowed."""

    def __init__(self, app, hosts: frozenset[str], port: int, any_ip: bool = False, token: str | None = None,
                 origins: frozenset[str] = frozenset()):
        self.app, self.hosts, self.port, self.any_ip, self.token = app, hosts, port, any_ip, token
        self.origins = origins

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        hosts = [value.decode("latin-1").lower() for key, value in headers if key == b"host"]
        if len(hosts) != 1 or not self.host_ok(hosts[0]):
            await _refuse(scope, receive, send, 421, "nemo-chat: this server does not answer to that host name "
                          "(see --allow-host)")
            return
        origins = [value.decode("latin-1") for key, value in headers if key == b"origin"]
        if self.from_another_site(scope, origins, hosts[0]):
            await _refuse(scope, receive, send, 403, "nemo-chat: pages of other sites may not call this server "
                          "(see --allow-origin)")
            return
        if self.token and not self.authorized(dict(headers).get(b"authorization", b"")) \
                and not self.api_key_given(scope, dict(headers).get(b"x-api-key")) and not _is_startup_check(scope):
            await _refuse(scope, receive, send, 401, "nemo-chat: this server needs its token (user nemo, password "
                          "= the token; or the header Authorization: Bearer TOKEN, or x-api-key: TOKEN on /v1)",
                          [(b"www-authenticate", b'Basic realm="nemo-chat", charset="UTF-8"')])
            return
        if fetches_elsewhere(scope.get("path", "")):
            await _refuse(scope, receive, send, 403, "nemo-chat: this server fetches nothing from other servers")
            return
        cors = _cors_headers(origins[0]) if origins and _origin(origins[0]) in self.origins else []
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        if cors and scope["method"] == "OPTIONS" and dict(headers).get(b"access-control-request-method"):
            await _answer_preflight(receive, send, cors, dict(headers).get(b"access-control-request-headers"))
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", [])
                        if k.lower() not in _SECURITY_NAMES and not k.lower().startswith(b"access-control-")]
                message = {**message, "headers": kept + SECURITY_HEADERS + cors}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def host_ok(self, value: str) -> bool:
        return value in self.hosts or (self.any_ip and _is_ip_host(value, self.port))

    def from_another_site(self, scope, origins: list[str], host: str) -> bool:
        """True for a request a page of another site made: its `Origin` is neither this server's
        (`http(s)://` + its Host) nor one the user allowed; without an Origin, `Sec-Fetch-Site:
        cross-site` (a link followed to the page itself, `GET /`, is let through)."""
        if origins:
            origin = _origin(origins[0])
            return len(origins) != 1 or origin is None or \
                origin not in {*self.origins, _origin(f"http://{host}"), _origin(f"https://{host}")}
        headers = dict(scope.get("headers") or [])
        followed_link = scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and scope["path"] == "/" \
            and headers.get(b"sec-fetch-mode", b"").lower() == b"navigate"
        return headers.get(b"sec-fetch-site", b"").lower() == b"cross-site" and not followed_link

    def api_key_given(self, scope, key: bytes | None) -> bool:
        """The token as `x-api-key` (how Anthropic's clients send a key), on the API's routes only."""
        path = scope.get("path", "")
        return key is not None and (path == "/v1" or path.startswith("/v1/")) and \
            hmac.compare_digest(key.strip(), self.token.encode("utf-8"))

    def authorized(self, header: bytes) -> bool:
        """`Bearer TOKEN`, or HTTP Basic with user `nemo` and the token as password."""
        scheme, _, value = header.decode("latin-1").strip().partition(" ")
        given = value.strip()
        if scheme.lower() == "basic":
            try:
                user, _, given = base64.b64decode(given, validate=True).decode("utf-8").partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            if user != USER:
                return False
        elif scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8"))


def _origin(value: str) -> str | None:
    """`scheme://host[:port]` in lower case without the scheme's default port; None for anything
    that is not an http(s) origin (`null`, a path, a user name)."""
    match = re.fullmatch(r"(https?)://([a-z0-9.\-]+|\[[0-9a-f:.]+\])(?::(\d{1,5}))?/?", value.strip().lower())
    if not match:
        return None
    scheme, name, port = match.groups()
    default = {"http": "80", "https": "443"}[scheme]
    return f"{scheme}://{name}" + (f":{port}" if port and port != default else "")


def allowed_origins(extra=()) -> frozenset[str]:
    """Origins of other sites whose pages may call the app: `extra` (`--allow-origin`) and
    $NEMO_CHAT_ALLOWED_ORIGINS (comma-separated), each `http(s)://host[:port]`."""
    origins = set()
    for value in [*extra, *os.environ.get(ORIGINS_ENV, "").split(",")]:
        if value.strip():
            origin = _origin(value)
            if origin is None:
                raise UserError("guard_bad_origin", value=value.strip())
            origins.add(origin)
    return frozenset(origins)


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """What lets the page of an allowed origin read an answer (no cookies: the token is a header)."""
    return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]


async def _answer_preflight(receive, send, cors, asked_headers: bytes | None) -> None:
    """A preflight from an allowed origin, answered here: GET and POST, the headers it asked for."""
    await receive()
    headers = [*cors, (b"access-control-allow-methods", b"GET, POST"), (b"access-control-max-age", b"600"),
               *([(b"access-control-allow-headers", asked_headers)] if asked_headers else []),
               (b"content-length", b"0"), *SECURITY_HEADERS]
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


_FETCH_ROUTE = re.compile(r"[/\\](?P<route>file=|file[/\\]|proxy=)\s*", re.IGNORECASE)
_ELSEWHERE = re.compile(r"[a-z][a-z0-9+.\-]+:|[/\\]{2}", re.IGNORECASE)


def fetches_elsewhere(path: str) -> bool:
    """True for a path of Gradio's that fetches another server's URL (`/gradio_api/file=https://…`,
    `/gradio_api/file/http://…`, `/gradio_api/proxy=…`), in any percent-encoding."""
    for _ in range(4):  # %253A is %3A once decoded, then :
        if any(match["route"].lower() == "proxy=" or _ELSEWHERE.match(path, match.end())
               for match in _FETCH_ROUTE.finditer(path)):
            return True
        path, before = unquote(path), path
        if path == before:
            return False
    return bool(_FETCH_ROUTE.search(path))  # a file route encoded more deeply than any client of ours would


def _is_startup_check(scope) -> bool:
    """Gradio's launch() asks this one route, from this machine, without credentials, and gives
    up when it fails; it answers only true or false (and runs the app's startup events once)."""
    client = scope.get("client") or ("",)
    return scope["type"] == "http" and scope["method"] == "GET" and \
        scope["path"] == "/gradio_api/startup-events" and is_loopback(client[0])


async def _refuse(scope, receive, send, status: int, text: str, extra_headers=()) -> None:
    """A one-line plain-text refusal (a websocket gets it as its handshake answer where the server
    can send one, else the handshake is closed). A small request body is read first: a server that
    closes with unread bytes resets the connection, and the client would never see the answer."""
    if scope["type"] == "http":
        received, more = 0, True
        while more and received <= DRAIN_LIMIT:
            message = await receive()
            received += len(message.get("body", b""))
            more = message["type"] == "http.request" and message.get("more_body", False)
    body = (text + "\n").encode("utf-8")
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
               *extra_headers, *SECURITY_HEADERS]
    prefix = "" if scope["type"] == "http" else "websocket."
    if prefix and "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": prefix + "http.response.start", "status": status, "headers": headers})
    await send({"type": prefix + "http.response.body", "body": body})


def web_guard(bind: str, port: int, extra_hosts=(), token: str | None = None, extra_origins=()):
    """A function that puts an ASGI app behind the guard of a server on `bind:port`; a badly
    written origin is refused here, before anything is served."""
    settings = dict(hosts=allowed_hosts(bind, port, extra_hosts), port=port, any_ip=bind in WILDCARDS, token=token,
                    origins=allowed_origins(extra_origins))
    return lambda app: WebGuard(app, **settings)


def guarded_gradio_app(wrap):
    """The app for Gradio's `launch(_app=...)` (as `gr.Server` does): its whole middleware stack,
    Gradio's own CORS and compression layers included, runs inside `wrap(stack)`, so the guard is
    the outermost layer and sees every request first."""
    from gradio.routes import App, ORJSONResponse

    class GuardedApp(App):
        def build_middleware_stack(self):
            return wrap(super().build_middleware_stack())

    return GuardedApp(default_response_class=ORJSONResponse)


# -- images that would load from elsewhere become links ---------------------------------------------
_FENCE = r"^ {0,3}(?P<fence>`{3,}|~{3,})[^\n]*(?:\n[\s\S]*?^ {0,3}(?P=fence)[`~]*[ \t]*$|[\s\S]*\Z)"
_SPAN = r"(?<!`)(?P<ticks>`+)(?!`)[\s\S]*?(?<!`)(?P=ticks)(?!`)"
_DESTINATION = r"<[^<>\n]*>|[^\s()<>]*(?:\([^\s()]*\)[^\s()<>]*)*"
_TITLE = r"""(?:\s+(?:"[^"]*"|'[^']*'|\([^()]*\)))?"""
_INLINE = rf"!\[(?P<alt>(?:[^\[\]\\]|\\.|\[[^\[\]]*\])*)\]\(\s*(?P<url>{_DESTINATION})(?P<title>{_TITLE})\s*\)"
_REFERENCE = r"!\[(?P<ralt>(?:[^\[\]\\]|\\.)*)\](?:\[(?P<ref>(?:[^\[\]\\]|\\.)*)\])?"
_HTML_IMG = r"<img\b(?P<attrs>(?:\"[^\"]*\"|'[^']*'|[^'\">])*)>"
_LOADING_TAG = r"<(?=(?:video|audio|source|picture|iframe|embed|object|input|link|track|image|svg)\b)"
_IMAGES = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in [
    ("code", f"{_FENCE}|{_SPAN}"), ("inline", _INLINE), ("reference", _REFERENCE),
    ("html", _HTML_IMG), ("tag", _LOADING_TAG)]), re.MULTILINE | re.IGNORECASE)
_CODE = re.compile(f"{_FENCE}|{_SPAN}", re.MULTILINE)
_DEFINITION = re.compile(rf"^ {{0,3}}\[(?P<label>(?:[^\[\]\\]|\\.)+)\]:[ \t]*\n?[ \t]*(?P<url>{_DESTINATION})",
                         re.MULTILINE)
_QUOTE_IN_LINK = re.compile(r"[<>\s]")
_ATTRIBUTE = r"""(?<![\w-]){}\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+))"""


def _as_browser_reads(url: str, markdown: bool = True) -> str:
    """The URL as the browser gets it: Markdown escapes (if `markdown`) and HTML entities decoded,
    <> dropped, tabs and newlines removed, leading and trailing controls and spaces stripped."""
    url = url.strip()
    if markdown:
        url = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", url)
    url = html.unescape(url)
    if url.startswith("<") and url.endswith(">"):
        url = url[1:-1]
    return re.sub(r"[\t\n\r]", "", url).strip("".join(map(chr, range(33))))


def is_local_url(url: str) -> bool:
    """True for what loads from this app only: a `data:` URL or a relative path, but none of
    Gradio's routes that fetch another server (`/gradio_api/file=https://…`, in any encoding). Read
    both as Markdown and as an HTML attribute: local only if local both ways."""
    return all(form.lower().startswith("data:") or not (re.match(r"[a-z][a-z0-9+.\-]*:|[/\\]{2}", form, re.IGNORECASE)
                                                        or fetches_elsewhere("/" + form))
               for form in (_as_browser_reads(url), _as_browser_reads(url, markdown=False)))


def _as_link(label: str, url: str, destination: str) -> str:
    """`[🖼 label]destination` for a web address; plain `🖼 label` for any other (javascript:, file:)."""
    if re.match(r"https?:|[/\\]{2}", _as_browser_reads(url), re.IGNORECASE):
        return f"[🖼 {label}]{destination}"
    return f"🖼 {label}"


def remote_images_as_links(markdown: str) -> str:
    """Markdown with every image that would load from another server made a link the user may
    open (`![x](https://a.example/p.png)` → `[🖼 x](https://a.example/p.png)`). Markdown images
    (inline and by reference) and HTML `<img>` are rewritten; other HTML tags that load things
    (`<video>`, `<iframe>`, …) are shown as text; code spans and blocks are left alone."""
    if "!" not in markdown and "<" not in markdown:
        return markdown
    definitions = {_label(m["label"]): m["url"] for m in _DEFINITION.finditer(_CODE.sub("", markdown))}

    def rewrite(match: re.Match) -> str:
        if match["code"] is not None:
            return match[0]
        if match["inline"] is not None:
            url = match["url"]
            return match[0] if is_local_url(url) else _as_link(match["alt"], url, f"({url}{match['title']})")
        if match["reference"] is not None:
            label = match["ref"] or match["ralt"]
            url = definitions.get(_label(label))
            if url is None or is_local_url(url):
                return match[0]
            return _as_link(match["ralt"], url, f"[{label}]")
        if match["tag"] is not None:
            return "&lt;"
        srcset = _attribute(match["attrs"], "srcset") or ""
        sources = [_attribute(match["attrs"], "src") or "", *(item.split()[0] for item in srcset.split(",") if item.split())]
        remote = [url for url in sources if not is_local_url(url)]
        if not remote:
            return match[0]
        alt = re.sub(r"[\[\]\\]", "", html.unescape(_attribute(match["attrs"], "alt") or "")) or "image"
        return _as_link(alt, remote[0], f"(<{_QUOTE_IN_LINK.sub(_percent, html.unescape(remote[0]))}>)")

    return _IMAGES.sub(rewrite, markdown)


def _percent(match: re.Match) -> str:
    return f"%{ord(match[0]):02X}"


def _label(label: str) -> str:
    return " ".join(label.split()).lower()


def _attribute(attrs: str, name: str) -> str | None:
    match = re.search(_ATTRIBUTE.format(name), attrs, re.IGNORECASE)
    return None if match is None else next(group for group in match.groups() if group is not None)
