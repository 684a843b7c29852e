"""A fault-injecting HTTP reverse proxy in front of the moto S3 server.

The worker's ``S3_ENDPOINT_URL`` points here; the tests arrange and inspect objects on
moto directly. Faults apply to ``DeleteObjects`` (``POST /<bucket>?delete``), the only
S3 call that deletes, unless ``all_requests`` is set:

- ``stop()``: nothing listens, connections are refused;
- ``fail_with(503, "SlowDown")``: each of those requests is answered with an S3 XML
  error, never forwarded (botocore's own retries meet the same answer);
- ``fail_keys(keys)``: the chosen keys are stripped from the request body before it is
  forwarded, and reported back as ``InternalError`` entries (a partial failure);
- ``hold(after=n)`` / ``hold_deleting(key)``: the chosen request waits until
  ``release()``, so a test knows the worker is in the middle of an S3 call, and which
  process made it (its client port); other requests pass;
- ``delay(seconds)``: every request waits that long before it is forwarded.

Every key forwarded in a ``DeleteObjects`` body is counted, so a test can tell how many
times an object was asked to be deleted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import http.client
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"
# Headers about one hop, or describing a body this proxy re-frames.
HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
)
# Integrity headers that describe the original body; a rewritten body cannot honour them.
BODY_DIGEST_HEADERS = ("content-md5", "x-amz-sdk-checksum-algorithm")
OBJECT_ENTRY = re.compile(r"<Object>\s*<Key>(?P<key>.*?)</Key>.*?</Object>", re.S)
ERROR_MESSAGES = {
    "InternalError": "We encountered an internal error. Please try again.",
    "ServiceUnavailable": "Service is unable to handle request.",
    "SlowDown": "Please reduce your request rate.",
}
# How long a held request waits for release before it gives up (never hang a test).
HOLD_LIMIT_SECONDS = 60.0


def s3_error_body(code: str) -> bytes:
    message = ERROR_MESSAGES.get(code, code)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>fault-proxy</RequestId><HostId>fault-proxy</HostId></Error>"
    ).encode()


def is_delete_objects(method: str, path: str) -> bool:
    return method == "POST" and "delete" in parse_qs(urlsplit(path).query, keep_blank_values=True)


def strip_keys(body: bytes, fails: Callable[[str], bool]) -> tuple[bytes, list[str], list[str]]:
    """The DeleteObjects body without the failing keys, the keys kept, the keys stripped."""
    kept: list[str] = []
    stripped: list[str] = []

    def keep_or_drop(match: re.Match[str]) -> str:
        key = html.unescape(match.group("key"))
        if fails(key):
            stripped.append(key)
            return ""
        kept.append(key)
        return match.group(0)

    rewritten = OBJECT_ENTRY.sub(keep_or_drop, body.decode())
    return rewritten.encode(), kept, stripped


def with_errors(response_body: bytes, failed_keys: Iterable[str]) -> bytes:
    """Add an ``InternalError`` entry per key to a DeleteObjects result."""
    errors = "".join(
        f"<Error><Key>{html.escape(key)}</Key><Code>InternalError</Code>"
        f"<Message>{ERROR_MESSAGES['InternalError']}</Message></Error>"
        for key in failed_keys
    )
    text = response_body.decode()
    if "</DeleteResult>" in text:
        return text.replace("</DeleteResult>", errors + "</DeleteResult>").encode()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"{errors}</DeleteResult>"
    ).encode()


@dataclass
class HoldRule:
    """Holds the first DeleteObjects request it matches until it is released."""

    matches: Callable[[int, list[str]], bool]
    released: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    forward: bool = True
    client_port: int | None = None


class S3FaultProxy:
    """A ``ThreadingHTTPServer`` forwarding to moto, with the faults above switchable."""

    def __init__(self, upstream_url: str) -> None:
        upstream = urlsplit(upstream_url)
        self.upstream = (upstream.hostname or LOOPBACK, upstream.port or 80)
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        # Open client connections: stopping must cut kept-alive ones too, or a client
        # holding one would still get through.
        self._connections: set[socket.socket] = set()
        self.heal()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # Lifecycle ---------------------------------------------------------------------

    def start(self) -> S3FaultProxy:
        """Listen (again, on the same port once one was chosen)."""
        server = ThreadingHTTPServer((LOOPBACK, self.port), self._handler_class())
        server.daemon_threads = True
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, name="s3-fault-proxy", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop listening: the worker's connections are refused until ``start()``."""
        self.release(forward=False)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    @property
    def listening(self) -> bool:
        return self._server is not None

    # Faults ------------------------------------------------------------------------

    def heal(self) -> None:
        """Forward everything untouched; counters start again from zero."""
        if hasattr(self, "holds"):
            self.release(forward=False)
        with self._lock:
            self.all_requests = False
            self.error: tuple[int, str] | None = None
            self.failing_key: Callable[[str], bool] | None = None
            self.delay_seconds = 0.0
            self.holds: list[HoldRule] = []
            self.matched_requests = 0
            self.forwarded_keys: Counter[str] = Counter()
            self.failed_keys: Counter[str] = Counter()

    def fail_with(self, status: int, code: str, *, all_requests: bool = False) -> None:
        with self._lock:
            self.error = (status, code)
            self.all_requests = all_requests

    def fail_keys(self, keys: Callable[[str], bool] | Iterable[str]) -> None:
        chosen = keys if callable(keys) else frozenset(keys).__contains__
        with self._lock:
            self.failing_key = chosen

    def delay(self, seconds: float) -> None:
        with self._lock:
            self.delay_seconds = seconds

    def hold(self, after: int = 0) -> HoldRule:
        """Let ``after`` more DeleteObjects calls through, then hold the next one."""
        with self._lock:
            number = self.matched_requests + after + 1
        return self._add_hold(lambda request_number, _keys: request_number == number)

    def hold_deleting(self, key: str) -> HoldRule:
        """Hold the first DeleteObjects call that asks for this key."""
        return self._add_hold(lambda _number, keys: key in keys)

    def _add_hold(self, matches: Callable[[int, list[str]], bool]) -> HoldRule:
        rule = HoldRule(matches)
        with self._lock:
            self.holds.append(rule)
        return rule

    def release(self, *, forward: bool = True) -> None:
        """Let held requests go on; ``forward=False`` drops them, as if never sent."""
        with self._lock:
            rules, self.holds = self.holds, []
        for rule in rules:
            rule.forward = forward
            rule.released.set()

    def wait_until_held(self, timeout: float) -> list[int]:
        """Once every hold has its request: the client ports (to find who sent each)."""
        with self._lock:
            rules = list(self.holds)
        deadline = time.monotonic() + timeout
        for rule in rules:
            if not rule.arrived.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no S3 request was held within {timeout:.0f}s")
        return [rule.client_port for rule in rules if rule.client_port is not None]

    # Serving -----------------------------------------------------------------------

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with proxy._lock:
                    proxy._connections.add(self.connection)

            def finish(self) -> None:
                with proxy._lock:
                    proxy._connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # request lines carry presigned queries; keep them out of test output

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                proxy._serve(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET  # noqa: N815

        return Handler

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        deleting = is_delete_objects(request.command, request.path)
        asked = (
            [html.unescape(m.group("key")) for m in OBJECT_ENTRY.finditer(body.decode())]
            if deleting
            else []
        )
        holding: HoldRule | None = None
        with self._lock:
            matched = deleting or self.all_requests
            if matched:
                self.matched_requests += 1
                holding = next(
                    (
                        rule
                        for rule in self.holds
                        if not rule.arrived.is_set() and rule.matches(self.matched_requests, asked)
                    ),
                    None,
                )
            if holding is not None:
                holding.client_port = request.client_address[1]
                holding.arrived.set()
            delay, error, failing_key = self.delay_seconds, self.error, self.failing_key
        if holding is not None:
            holding.released.wait(HOLD_LIMIT_SECONDS)
            if not holding.forward:
                request.close_connection = True
                return
        if matched and delay:
            time.sleep(delay)
        if matched and error is not None:
            status, code = error
            self._reply(request, status, {"Content-Type": "application/xml"}, s3_error_body(code))
            return

        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        stripped: list[str] = []
        if deleting:
            if failing_key is not None:
                body, kept, stripped = strip_keys(body, failing_key)
                headers = self._rewritten_body_headers(headers, body)
            else:
                kept = asked
            with self._lock:
                self.forwarded_keys.update(kept)
                self.failed_keys.update(stripped)
            if not kept:
                # Nothing left to forward: S3 would call an empty Delete malformed.
                self._reply(
                    request, 200, {"Content-Type": "application/xml"}, with_errors(b"", stripped)
                )
                return
        status, response_headers, response_body = self._forward(request, headers, body)
        if stripped and status == 200:
            response_body = with_errors(response_body, stripped)
        self._reply(request, status, response_headers, response_body)

    @staticmethod
    def _rewritten_body_headers(headers: dict[str, str], body: bytes) -> dict[str, str]:
        kept = {
            k: v
            for k, v in headers.items()
            if k.lower() not in BODY_DIGEST_HEADERS and not k.lower().startswith("x-amz-checksum-")
        }
        # A digest of the new body: S3 requires one on DeleteObjects.
        kept["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324
        for name in list(kept):
            if name.lower() == "x-amz-content-sha256" and kept[name] != "UNSIGNED-PAYLOAD":
                kept[name] = hashlib.sha256(body).hexdigest()
        return kept

    def _forward(
        self, request: BaseHTTPRequestHandler, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            headers["Content-Length"] = str(len(body))
            connection.request(request.command, request.path, body=body, headers=headers)
            response = connection.getresponse()
            response_body = response.read()
            response_headers = {
                k: v
                for k, v in response.getheaders()
                # A HEAD answer has no body but reports the object's length: keep it.
                if k.lower() not in HOP_HEADERS
                or (request.command == "HEAD" and k.lower() == "content-length")
            }
            return response.status, response_headers, response_body
        finally:
            connection.close()

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes
    ) -> None:
        request.send_response(status)
        for name, value in headers.items():
            request.send_header(name, value)
        if not any(name.lower() == "content-length" for name in headers):
            request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(body)
