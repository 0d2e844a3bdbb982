"""The HTTP server every loopback test server runs on."""

from http.server import ThreadingHTTPServer


class LoopbackHTTPServer(ThreadingHTTPServer):
    # A client with many requests in flight (the openai client under a semaphore of 8,
    # the scrape's concurrent fetches) overruns the default listen backlog of 5 on a busy
    # machine, and the refused connections read as server faults the test did not script.
    request_queue_size = 128
    daemon_threads = True
