#!/usr/bin/python3
"""publish.py - the shop of the chaos run: publish JSON-line events at a rate,
each with a new message id, through a broker that comes and goes.

usage: publish.py FILE --port P --vhost V --user U --password W [--rate N]

Every line goes to shop.events with routing key = its event_code, persistent,
with publisher confirms. When the broker is away the line is published again
once it is back (a second copy is a duplicate the consumers must absorb, as
with a real shop's retries). Prints the number of lines, and of publishes
repeated after an error, as JSON on exit.
"""
import argparse
import json
import sys
import time
import uuid

import pika


def connect(a):
    params = pika.ConnectionParameters("127.0.0.1", a.port, a.vhost,
                                       pika.PlainCredentials(a.user, a.password),
                                       connection_attempts=1, socket_timeout=5,
                                       blocked_connection_timeout=30)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    return conn, ch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--vhost", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--rate", type=float, default=0, help="events a second; 0: as fast as confirmed")
    a = ap.parse_args()
    with open(a.file) as f:
        lines = [l.strip() for l in f if l.strip()]
    conn = ch = None
    repeated = 0
    started = time.monotonic()
    i = 0
    while i < len(lines):
        if a.rate:
            ahead = started + i / a.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        code = json.loads(lines[i])["event_code"]
        try:
            if ch is None:
                conn, ch = connect(a)
            ch.basic_publish("shop.events", code, lines[i].encode(),
                             pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                  message_id=str(uuid.uuid4()), type=code),
                             mandatory=True)
            i += 1
        except (pika.exceptions.AMQPError, OSError) as e:
            # unconfirmed: maybe stored, maybe not; publish it again
            repeated += 1
            print(f"publish.py: line {i + 1}: {type(e).__name__} {e}; publishing it again", file=sys.stderr)
            conn = ch = None
            time.sleep(0.5)
    if conn is not None:
        conn.close()
    print(json.dumps({"lines": len(lines), "repeated": repeated,
                      "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
