"""What every loopback test server shares: the HTTP server and a JSON reply."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackHTTPServer(ThreadingHTTPServer):
    """`handler` on 127.0.0.1:<free port> (`.url`), bound at once; `with server:` serves it
    from a daemon thread until the block ends."""

    # A client with many requests in flight (the openai client under a semaphore of 8,
    # the scrape's concurrent fetches) overruns the default listen backlog of 5 on a busy
    # machine, and the refused connections read as server faults the test did not script.
    request_queue_size = 128
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


def send_json(handler: BaseHTTPRequestHandler, status: int, payload) -> None:
    """Answer a request with `payload` as JSON, as every API we imitate does."""
    data = json.dumps(payload).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
