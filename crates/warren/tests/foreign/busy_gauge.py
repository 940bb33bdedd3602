"""A worker that does nothing but report a busy gauge, for the pool's idle-first test.

Serves `jobs_in_hand` on http://127.0.0.1:$WARREN_METRICS_PORT/metrics: 1 for the worker whose
WARREN_WORKER_INDEX is the first argument, 0 for the others. Exits on SIGTERM. Standard library
only.
"""

import http.server
import os
import signal
import sys
import threading

BUSY_INDEX = sys.argv[1]
INDEX = os.environ["WARREN_WORKER_INDEX"]
PORT = int(os.environ["WARREN_METRICS_PORT"])
BUSY = 1 if INDEX == BUSY_INDEX else 0


class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"# TYPE jobs_in_hand gauge\njobs_in_hand {BUSY}\n".encode()
        self.send_response(200 if self.path == "/metrics" else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", PORT), Metrics)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
