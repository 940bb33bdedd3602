"""A consumer warren did not write, as `warren autoscale --worker-command` runs it.

    python consumer.py --work 2 --prefetch 1 --acked DIR [--metrics]

It reads the pool's environment: WARREN_AMQP_URL, WARREN_QUEUE, WARREN_WORKER_INDEX,
WARREN_METRICS_PORT, WARREN_PARENT_PID. It takes one message at a time (up to --prefetch wait
in its buffer), sleeps --work seconds (the job), acks it, and appends its id to
DIR/acked-<index>-<pid>.txt. On SIGTERM it finishes the job in hand, hands the messages still
in its buffer back (reject with requeue), and exits; it also stops when its parent is gone.
With --metrics it serves the gauge `jobs_in_hand` (1 during a job, else 0) at
http://127.0.0.1:$WARREN_METRICS_PORT/metrics, which lets the pool stop idle workers first.
"""

import argparse
import http.server
import os
import signal
import sys
import threading
import time

import pika

state = {"stopping": False, "in_hand": 0}


class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = (
            "# TYPE jobs_in_hand gauge\n"
            f"jobs_in_hand {state['in_hand']}\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=float, required=True, help="seconds a job takes")
    parser.add_argument("--prefetch", type=int, default=1)
    parser.add_argument("--acked", required=True, help="directory for the acked ids")
    parser.add_argument("--metrics", action="store_true", help="serve the jobs_in_hand gauge")
    args = parser.parse_args()
    index = os.environ["WARREN_WORKER_INDEX"]
    parent = int(os.environ.get("WARREN_PARENT_PID", "0"))
    signal.signal(signal.SIGTERM, lambda *_: state.update(stopping=True))
    if args.metrics:
        port = int(os.environ["WARREN_METRICS_PORT"])
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Metrics)
        threading.Thread(target=server.serve_forever, daemon=True).start()

    connection = pika.BlockingConnection(pika.URLParameters(os.environ["WARREN_AMQP_URL"]))
    channel = connection.channel()
    queue = os.environ["WARREN_QUEUE"]
    channel.queue_declare(queue=queue, durable=True)
    channel.basic_qos(prefetch_count=args.prefetch)
    path = os.path.join(args.acked, f"acked-{index}-{os.getpid()}.txt")
    out = open(path, "a", encoding="utf-8")

    def on_message(ch, method, properties, body):
        if state["stopping"]:
            # Not started: back to the queue for another worker.
            ch.basic_reject(delivery_tag=method.delivery_tag, requeue=True)
            return
        state["in_hand"] = 1
        time.sleep(args.work)
        ch.basic_ack(delivery_tag=method.delivery_tag)
        out.write((properties.message_id or body.decode()) + "\n")
        out.flush()
        state["in_hand"] = 0

    channel.basic_consume(queue=queue, on_message_callback=on_message)
    print(f"consumer {index}: consuming {queue}", file=sys.stderr, flush=True)
    while not state["stopping"]:
        connection.process_data_events(time_limit=0.2)
        if parent and os.getppid() != parent:
            print(f"consumer {index}: parent gone", file=sys.stderr, flush=True)
            break
    # Messages delivered during the last round were rejected in on_message; closing hands
    # back whatever else is still unacked.
    connection.close()
    out.close()
    print(f"consumer {index}: stopped", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
