#!/usr/bin/python3
"""publish.py - the shop of the chaos run: publish JSON-line events at a rate
through a broker that comes and goes.

usage: OQ_CHAOS_PASSWORD=W publish.py FILE --port P --vhost V --user U --orderq BIN
                  [--rate N]

A second of lines at a time: their first copies through `orderq publish`
(ORDERQ_AMQP_URL must be the shop's; message_id = event_identifier, windowed
confirms, fast enough to keep the rate), each later copy of an event through
pika with a message id of its own, as a second listener of the shop would.
Every line goes to shop.events with routing key = its event_code, persistent,
with publisher confirms. When the broker is away the lines are published again
once it is back (a second copy is a duplicate the consumers must absorb, as
with a real shop's retries). Prints the number of lines, and of publishes
repeated after an error, as JSON on exit.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import uuid

import pika


def connect(a):
    params = pika.ConnectionParameters("127.0.0.1", a.port, a.vhost,
                                       pika.PlainCredentials(a.user, os.environ["OQ_CHAOS_PASSWORD"]),
                                       connection_attempts=1, socket_timeout=5,
                                       blocked_connection_timeout=30)
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    ch.confirm_delivery()
    return conn, ch


def publish_copies(a, state, lines):
    """Later copies of events, each with a message id of its own, through pika."""
    i = 0
    while i < len(lines):
        code = json.loads(lines[i])["event_code"]
        try:
            if state["ch"] is None:
                state["conn"], state["ch"] = connect(a)
            state["ch"].basic_publish("shop.events", code, lines[i].encode(),
                                      pika.BasicProperties(content_type="application/json", delivery_mode=2,
                                                           message_id=str(uuid.uuid4()), type=code),
                                      mandatory=True)
            i += 1
        except (pika.exceptions.AMQPError, OSError) as e:
            # unconfirmed: maybe stored, maybe not; publish it again
            state["repeated"] += 1
            print(f"publish.py: a copy: {type(e).__name__} {e}; publishing it again", file=sys.stderr)
            state["conn"] = state["ch"] = None
            time.sleep(0.5)


def publish_firsts(a, state, lines):
    """First copies through `orderq publish`, the whole chunk again until it is confirmed."""
    data = "".join(l + "\n" for l in lines).encode()
    while lines:
        r = subprocess.run([a.orderq, "publish", "-"], input=data, capture_output=True)
        if r.returncode == 0:
            return
        state["repeated"] += len(lines)
        print(f"publish.py: orderq publish exit {r.returncode}: {r.stderr.decode()[-300:]}; publishing "
              f"{len(lines)} lines again", file=sys.stderr)
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--vhost", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--orderq", required=True)
    ap.add_argument("--rate", type=float, default=0, help="events a second; 0: as fast as confirmed")
    a = ap.parse_args()
    with open(a.file) as f:
        lines = [l.strip() for l in f if l.strip()]
    state = {"conn": None, "ch": None, "repeated": 0}
    started = time.monotonic()
    step = int(a.rate) if a.rate >= 1 else len(lines)
    seen = set()
    for at in range(0, len(lines), step):
        ahead = started + (at / a.rate if a.rate else 0) - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        firsts, copies = [], []
        for line in lines[at:at + step]:
            ident = json.loads(line)["event_identifier"]
            (copies if ident in seen else firsts).append(line)
            seen.add(ident)
        publish_firsts(a, state, firsts)
        publish_copies(a, state, copies)
    if state["conn"] is not None:
        state["conn"].close()
    print(json.dumps({"lines": len(lines), "lines_published_again": state["repeated"],
                      "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
