"""A loopback OpenAI-compatible /v1/chat/completions endpoint for judging, with scripted verdicts.

    with judge_server.serve(lambda a, b: '{"best": "A", "explanation": "x"}') as server:
        JudgeConfig(base_url=server.url, ...)

`verdict(summary_a, summary_b)` returns the message content the "model" answers,
or an int HTTP status to fail with. Answers in the real API's shapes (a
`chat.completion` object, or an OpenAI error body), records every request, and,
with `json_schema=False`, refuses `response_format: json_schema` with a 400 as
servers without guided decoding do.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from tests.servers.loopback import LoopbackHTTPServer, send_json

# The two summaries inside resumo.judge.RUBRIC.
_SUMMARIES = re.compile(r"Summary A:\n(.*)\n\nSummary B:\n(.*)\Z", re.S)


@dataclass
class JudgeServer:
    url: str
    requests: list[dict] = field(default_factory=list)
    headers: list[dict] = field(default_factory=list)


@contextmanager
def serve(verdict: Callable[[str, str], str | int], json_schema: bool = True) -> Iterator[JudgeServer]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                server.requests.append(body)
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
            if self.path != "/v1/chat/completions":
                return self._send(404, _error(f"no route {self.path}", "not_found"))
            if not json_schema and (body.get("response_format") or {}).get("type") == "json_schema":
                return self._send(400, _error("response_format json_schema is not supported by this server", "invalid_request_error"))
            found = _SUMMARIES.search(body["messages"][-1]["content"])
            answer = verdict(found.group(1), found.group(2)) if found else 400
            if isinstance(answer, int):
                return self._send(answer, _error(f"scripted failure {answer}", "server_error"))
            self._send(200, _completion(body["model"], answer))

        def _send(self, status: int, payload: dict):
            send_json(self, status, payload)

        def log_message(self, *args):  # keep test output quiet
            pass

    with LoopbackHTTPServer(Handler) as httpd:
        server = JudgeServer(url=f"{httpd.url}/v1")
        yield server


def _completion(model: str, content: str) -> dict:
    return {
        "id": f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


def _error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}
