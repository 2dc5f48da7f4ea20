"""A small threaded HTTP server on 127.0.0.1 with a queue of injectable faults.

Subclasses implement ``handle_json(path, body) -> (status, payload)`` for their wire format.
Faults are consumed one per request, in order, before normal handling:

* ``("status", code, headers, body_dict)`` – answer with that status (e.g. 429 + retry-after);
  without ``body_dict`` the subclass's :meth:`FakeServer.error_body` in its API's format
* ``("hang", seconds)`` – accept the request, then say nothing for that long (client timeout)
* ``("malformed",)`` – 200 with a body that is not JSON
* ``("empty",)`` – 200 with a well-formed reply that has no content (no choices / no blocks)
* ``("delay", seconds)`` – answer normally after a pause (e.g. to measure concurrency)
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Fault = tuple[Any, ...]


class _QuietServer(ThreadingHTTPServer):
    """Says nothing when a client hangs up mid-request: the kill-and-resume checks do it on
    purpose, and a traceback per dropped connection would bury their output."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class FakeServer:
    """Base class: ``with Fake() as f:``; ``f.base_url``; ``f.requests`` records bodies."""

    def __init__(self, responder: Callable[[dict[str, Any]], str] | None = None,
                 delay_s: float = 0.0) -> None:
        self.responder = responder or (lambda body: "ok")
        self.delay_s = delay_s
        self.faults: deque[Fault] = deque()
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._tls = threading.local()  # each request is served on its own thread
        self._server: ThreadingHTTPServer | None = None

    # -- to override ---------------------------------------------------------------------
    def handle_json(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def empty_reply(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def error_body(self, code: int) -> dict[str, Any]:
        """The body of a ``("status", code)`` fault that brings none; subclasses speak their API."""
        return {"error": {"message": "fault"}}

    def handle_route(self, method: str, path: str, raw: bytes
                     ) -> tuple[int, bytes, str] | None:
        """Answer a request outside the per-call API (batch endpoints, file uploads and
        downloads) as ``(status, body, content type)``, or None to leave it to
        :meth:`handle_json`. These requests bypass the fault queue: batch faults are set on
        the fake's :class:`~tests.fakes.batches.BatchBook`."""
        return None

    def current_headers(self) -> dict[str, str]:
        """Lower-cased headers of the request being handled on this thread."""
        return dict(getattr(self._tls, "headers", {}))

    # -- plumbing ------------------------------------------------------------------------
    def add_fault(self, *fault: Any) -> None:
        self.faults.append(tuple(fault))

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    def __enter__(self) -> FakeServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _route(self, method: str, raw: bytes) -> bool:
                fake._tls.headers = {k.lower(): v for k, v in self.headers.items()}
                answer = fake.handle_route(method, self.path, raw)
                if answer is None:
                    return False
                code, data, ctype = answer
                self._send(code, data, {}, ctype)
                return True

            def do_GET(self) -> None:
                if not self._route("GET", b""):
                    self._send(404, json.dumps(fake.error_body(404)).encode(), {})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                raw = self.rfile.read(length)
                if self._route("POST", raw):
                    return
                body = json.loads(raw or b"{}")
                headers = {k.lower(): v for k, v in self.headers.items()}
                fake._tls.headers = headers
                with fake._lock:
                    fake.requests.append(body)
                    fake.headers.append(headers)
                    fault = fake.faults.popleft() if fake.faults else None
                if fault and fault[0] == "hang":
                    time.sleep(fault[1])
                    self.close_connection = True
                    return
                if fault and fault[0] == "delay":
                    time.sleep(fault[1])
                    fault = None
                if fake.delay_s:
                    time.sleep(fake.delay_s)
                if fault and fault[0] == "status":
                    _, code, headers, payload = (*fault, {}, {})[:4]
                    self._send(code, json.dumps(payload or fake.error_body(code)).encode(),
                               headers or {})
                    return
                if fault and fault[0] == "malformed":
                    self._send(200, b'{"id": "x", "choices": [ this is not json', {})
                    return
                if fault and fault[0] == "empty":
                    self._send(200, json.dumps(fake.empty_reply(body)).encode(), {})
                    return
                status, payload = fake.handle_json(self.path, body)
                self._send(status, json.dumps(payload).encode(), {})

            def _send(self, code: int, data: bytes, headers: dict[str, str],
                      ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll keeps shutdown() (and so every test's teardown) fast.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
