"""A producer warren did not write: publishes to a queue at a steady rate with publisher
confirms, and records the id of every message the broker confirmed.

    AMQP_URL=amqp://user:pass@host:port/vhost python producer.py --queue emails --rate 4 \
        --seconds 30 --confirmed confirmed.txt [--reconnect-every 3]

The URL comes from the environment (it holds a password). Each message's body and message_id
are its id; it is persistent. With --reconnect-every N the producer closes its connection and
opens a new one every N seconds, as a short-lived or restarting producer does (on RabbitMQ
3.10-3.13 its per-channel publish counters vanish with each channel). At the end it prints one
JSON line: the messages confirmed, over how many seconds, the rate, and the connections used.
"""

import argparse
import json
import os
import sys
import time
import uuid

import pika


def connect(url, queue):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    channel.queue_declare(queue=queue, durable=True)
    channel.confirm_delivery()
    return connection, channel


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages per second")
    parser.add_argument("--seconds", type=float, required=True, help="how long to publish")
    parser.add_argument("--confirmed", required=True, help="file of confirmed ids, one a line")
    parser.add_argument("--reconnect-every", type=float, default=0, help="seconds; 0 never")
    args = parser.parse_args()
    url = os.environ["AMQP_URL"]
    run = uuid.uuid4().hex[:8]
    connection, channel = connect(url, args.queue)
    connections = 1
    opened = time.monotonic()
    confirmed = 0
    started = time.monotonic()
    with open(args.confirmed, "a", encoding="utf-8") as out:
        sent = 0
        while True:
            # Open loop: message n is due at n / rate, whatever the confirms took.
            due = started + sent / args.rate
            if due - started >= args.seconds:
                break
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            if args.reconnect_every and time.monotonic() - opened >= args.reconnect_every:
                connection.close()
                connection, channel = connect(url, args.queue)
                connections += 1
                opened = time.monotonic()
            job_id = f"{run}-{sent}"
            sent += 1
            try:
                channel.basic_publish(
                    exchange="",
                    routing_key=args.queue,
                    body=job_id.encode(),
                    properties=pika.BasicProperties(message_id=job_id, delivery_mode=2),
                    mandatory=True,
                )
            except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
                print(f"producer: {job_id} not confirmed: {e!r}", file=sys.stderr)
                continue
            out.write(job_id + "\n")
            out.flush()
            confirmed += 1
    seconds = time.monotonic() - started
    connection.close()
    print(json.dumps({"confirmed": confirmed, "seconds": seconds,
                      "rate": confirmed / seconds, "connections": connections}))


if __name__ == "__main__":
    main()
