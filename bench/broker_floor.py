#!/usr/bin/python3
"""bench/broker_floor.py - the part of row 5's latency that is RabbitMQ's.

usage: broker_floor.py RATE COUNT

Publishes COUNT persistent messages at a steady RATE per second to a
temporary queue of the same type as orderq's work queues (quorum: RabbitMQ
delivers a message only once a majority of its log has it on disk), and
consumes them with a plain pika consumer that acks each at once, on
ORDERQ_AMQP_URL. Prints {"row": "broker_floor", "rate", "messages",
"p50_ms", "p99_ms", "max_ms"}: publish -> delivered, no database, no
batching. orderq's publish -> commit latency cannot be below this; what
is above it is orderq's (and MariaDB's) share. Python's own overhead is in
it too (tens of microseconds a message), so it is kept to 1,000/s or less.
"""
import json
import os
import sys
import threading
import time

import pika

QUEUE = "orderq.bench.floor"


def main():
    if len(sys.argv) != 3 or not all(a.isdigit() and int(a) > 0 for a in sys.argv[1:]):
        sys.exit(f"usage: {sys.argv[0]} RATE COUNT (positive integers)")
    rate, n = int(sys.argv[1]), int(sys.argv[2])
    if rate > 1000:
        sys.exit("broker_floor.py: RATE: expected at most 1000 (Python's overhead would show)")
    params = pika.URLParameters(os.environ["ORDERQ_AMQP_URL"])
    pub = pika.BlockingConnection(params)
    ch = pub.channel()
    ch.queue_declare(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})
    ch.queue_purge(QUEUE)
    lat = []

    def consume():
        conn = pika.BlockingConnection(params)
        c = conn.channel()
        c.basic_qos(prefetch_count=500)
        for method, _, body in c.consume(QUEUE, inactivity_timeout=10):
            if method is None:
                break
            lat.append((time.time() - float(body)) * 1000)
            c.basic_ack(method.delivery_tag)
            if len(lat) >= n:
                break
        conn.close()

    reader = threading.Thread(target=consume)
    reader.start()
    time.sleep(0.5)  # the consumer is subscribed before the first message
    t0 = time.monotonic()
    for i in range(n):
        due = t0 + i / rate - time.monotonic()
        if due > 0:
            time.sleep(due)
        ch.basic_publish("", QUEUE, repr(time.time()), pika.BasicProperties(delivery_mode=2))
    reader.join()
    ch.queue_delete(QUEUE)
    pub.close()
    if len(lat) != n:
        sys.exit(f"broker_floor.py: {n} published, {len(lat)} delivered")
    lat.sort()
    rank = lambda p: lat[max(0, (p * n + 99) // 100 - 1)]  # nearest rank, as pace
    print(json.dumps({"row": "broker_floor", "rate": rate, "messages": n, "p50_ms": round(rank(50), 3),
                      "p99_ms": round(rank(99), 3), "max_ms": round(lat[-1], 3)}))


if __name__ == "__main__":
    main()
