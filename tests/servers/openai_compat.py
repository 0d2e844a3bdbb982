"""An OpenAI-compatible /v1/chat/completions server on 127.0.0.1 whose answers and faults a test scripts.

    with OpenAICompatServer(answer=lambda prompt: "Resumo ...") as server:
        server.fail_next("500", times=2)        # then "hang" (past the client's timeout) or "malformed" (bad JSON)
        ... AsyncOpenAI(base_url=server.base_url) ...
        assert server.count == 3

Real HTTP (http.server in a thread, port 0) in the real API's response shape, so
the `openai` client's timeouts, retries and parsing run for real. A hang waits on
an event that closing the server sets, so no test sleeps.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from tests.servers.loopback import LoopbackHTTPServer

FAULTS = ("500", "hang", "malformed")


def lead_words(prompt: str, n: int = 40) -> str:
    """Default answer: the first `n` words of the text in a resumo prompt (after 'Texto:')."""
    text = prompt.split("Texto:", 1)[-1]
    text = text.split("\n\nEscreva um resumo", 1)[0]
    return " ".join(text.split()[:n])


class OpenAICompatServer:
    def __init__(self, answer: Callable[[str], str] = lead_words, hold_until_in_flight: int = 0):
        self.answer = answer  # the last user message's content -> the assistant's content
        self.hold_until_in_flight = hold_until_in_flight  # hold each request until this many are in flight (bounded wait)
        self.requests: list[dict] = []  # bodies received, in arrival order
        self.headers: list[dict[str, str]] = []  # lowercased names
        self.max_in_flight = 0
        self._faults: deque[str] = deque()
        self._fault_when: list[tuple[Callable[[str], bool], str]] = []
        self._in_flight = 0
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._httpd = LoopbackHTTPServer(self._handler())

    @property
    def base_url(self) -> str:
        return f"{self._httpd.url}/v1"

    @property
    def count(self) -> int:
        return len(self.requests)

    def prompts(self) -> list[str]:
        return [r["messages"][-1]["content"] for r in self.requests]

    def fail_next(self, fault: str, times: int = 1) -> None:
        """The next `times` requests, whatever they ask, get `fault`."""
        assert fault in FAULTS, fault
        self._faults.extend([fault] * times)

    def fail_when(self, predicate: Callable[[str], bool], fault: str) -> None:
        """Every request whose prompt satisfies `predicate` gets `fault`, forever."""
        assert fault in FAULTS, fault
        self._fault_when.append((predicate, fault))

    def __enter__(self) -> OpenAICompatServer:
        self._httpd.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()  # release hung requests
        self._httpd.__exit__(*exc)

    def _next_fault(self, prompt: str) -> str | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
        return next((fault for predicate, fault in self._fault_when if predicate(prompt)), None)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                prompt = body["messages"][-1]["content"]
                with server._lock:
                    server.requests.append(body)
                    server.headers.append({k.lower(): v for k, v in self.headers.items()})
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                    server._lock.notify_all()
                    # Bounded: proves the client keeps that many requests open at once.
                    server._lock.wait_for(lambda: server._in_flight >= server.hold_until_in_flight, timeout=5)
                try:
                    self._respond(body, prompt)
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _respond(self, body: dict, prompt: str) -> None:
                fault = server._next_fault(prompt)
                if fault == "500":
                    # retry-after-ms keeps the client's backoff short in tests; the client honours it.
                    return self._send(500, {"error": {"message": "scripted failure", "type": "server_error"}}, {"retry-after-ms": "10"})
                if fault == "hang":
                    server._closing.wait(timeout=30)  # past any test client's timeout; released on close
                    return
                if fault == "malformed":
                    return self._send_raw(200, b'{"id": "chatcmpl-1", "choices": [{"message": ', "application/json")
                content = server.answer(prompt)
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(server.requests)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", ""),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "logprobs": None, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(content.split()), "total_tokens": 0},
                    },
                )

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

            def _send_raw(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout); nothing to answer

        return Handler
