#!/usr/bin/python3
"""metrics_pub.py - the known load of the metrics tests, straight to the work queues.

usage: metrics_pub.py VHOST RUN [--orders N] [--dups D] [--invalid I] [--probes]

N orders (each earns a coupon, so a coupon mail follows), the first D of
them published twice, I bodies that are not events, and with --probes a
probe that fails once (retried, then done) and one that fails for good
(dead). Every message carries the AMQP timestamp (now), so the event age
is seconds, not years. Prints the counts it published as JSON.
"""
import argparse
import json
import time

import pika

ap = argparse.ArgumentParser()
ap.add_argument("vhost")
ap.add_argument("run")
ap.add_argument("--orders", type=int, default=10)
ap.add_argument("--dups", type=int, default=2)
ap.add_argument("--invalid", type=int, default=2)
ap.add_argument("--probes", action="store_true")
a = ap.parse_args()

params = pika.ConnectionParameters("127.0.0.1", 5672, a.vhost, pika.PlainCredentials("guest", "guest"))
conn = pika.BlockingConnection(params)
ch = conn.channel()
ch.confirm_delivery()


def send(queue, body, ident=None, code=None):
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                 timestamp=int(time.time()), message_id=ident, type=code)
    ch.basic_publish("", queue, body, props, mandatory=True)


def order(i):
    n = 9300000000 + i
    return json.dumps({
        "event_code": "order.processing", "event_identifier": f"{a.run}-{n}_processing",
        "event_data": {"order_id": str(n), "order_status": "processing", "currency": "USD",
                       "customer": {"email": f"m{i}.{a.run}@metrics.example", "name": "M"},
                       "items": [{"sku": "MUG-1", "qty": 3, "price": "25.00",
                                  "original_price": "25.00"}]}}).encode()


for i in range(a.orders):
    send("orderq.order.processing", order(i))
for i in range(a.dups):
    send("orderq.order.processing", order(i))
for i in range(a.invalid):
    send("orderq.order.processing", b"not an event %d" % i)
if a.probes:
    for ident, data in ((f"{a.run}-retry", {"fail": "transient", "fail_attempts": 1}),
                        (f"{a.run}-dead", {"fail": "permanent"})):
        send("orderq.probe", json.dumps({"event_code": "probe", "event_identifier": ident,
                                         "event_data": data}).encode())
conn.close()
print(json.dumps({"orders": a.orders, "dups": a.dups, "invalid": a.invalid}))
