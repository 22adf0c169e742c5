"""``FaultServer``: an HTTP server on 127.0.0.1 that answers every request with the failure you
queue, for checking that a cloud provider maps its vendor's errors to the stt-core tree.

It speaks plain HTTP/1.1 whatever the path or method (so any SDK pointed at its ``url`` reaches
it), with a JSON error body in the shapes common APIs use and ``Retry-After`` on 429. It runs in a
thread of its own, so synchronous tests and providers with their own event loops both reach it.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

_MESSAGES = {401: "Invalid API key", 403: "Forbidden", 429: "Rate limit reached",
             500: "Internal server error", 503: "Service unavailable"}


class FaultServer:
    """``with FaultServer() as server: server.fail_with(429, retry_after=7)``; then point your
    provider's base URL at ``server.url``. With nothing queued it answers 500."""

    def __init__(self) -> None:
        self._faults: deque[tuple[int, float | None]] = deque()
        self.requests = 0
        faults = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                faults.requests += 1
                status, retry_after = faults._faults.popleft() if faults._faults else (500, None)
                message = _MESSAGES.get(status, "error")
                body = json.dumps({"error": {"message": message, "type": "error", "code": status},
                                   "err_code": str(status), "err_msg": message}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if retry_after is not None:
                    self.send_header("Retry-After", f"{retry_after:g}")
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer  # http.server's names

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet: the test reads what it needs from the server

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def fail_with(self, status: int, *, retry_after: float | None = None, times: int = 10) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``)."""
        self._faults.clear()
        self._faults.extend([(status, retry_after)] * times)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
