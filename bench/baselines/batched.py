#!/usr/bin/python3
"""batched.py - what a careful engineer writes in Python: prefetch 1000, up
to 250 claims per executemany and commit, then one multiple ack; a partial
batch is flushed once no message came for 5 ms, so a quiet queue is not
held back.

usage: batched.py QUEUE COUNT
Drains COUNT events from QUEUE, claims each in event_ledger (handler
'baseline', effect_key = event_identifier, INSERT IGNORE) and prints
{"consumer", "events", "seconds", "per_second"}.
"""
import time

import common

BATCH = 250
IDLE_SECONDS = 0.005


def main():
    queue, count = common.usage("batched.py")
    db = common.connect_mysql()
    amqp = common.connect_amqp()
    channel = amqp.channel()
    channel.basic_qos(prefetch_count=1000)
    cursor = db.cursor()
    rows, last_tag, done = [], None, 0
    start = time.monotonic()
    for method, _properties, body in channel.consume(queue, inactivity_timeout=IDLE_SECONDS):
        if method is not None:
            rows.append(common.claim_args(body))
            last_tag = method.delivery_tag
        if rows and (method is None or len(rows) == BATCH or done + len(rows) == count):
            # Commit, then ack: never ack before the claims are durable.
            cursor.executemany(common.CLAIM, rows)
            db.commit()
            channel.basic_ack(last_tag, multiple=True)
            done += len(rows)
            rows = []
        if done == count:
            break
    common.report("batched", done, start)
    channel.cancel()
    amqp.close()
    db.close()


common.guarded(main)
