#!/usr/bin/python3
"""per_message.py - the consumer most shops run: one message, one insert, one
commit, one ack (a Symfony Messenger or Laravel queue worker on MySQL).

usage: per_message.py QUEUE COUNT
Drains COUNT events from QUEUE, claims each in event_ledger (handler
'baseline', effect_key = event_identifier, INSERT IGNORE) and prints
{"consumer", "events", "seconds", "per_second"}.
"""
import time

import common


def main():
    queue, count = common.usage("per_message.py")
    db = common.connect_mysql()
    amqp = common.connect_amqp()
    channel = amqp.channel()
    # 100: what such workers ship with or are told to use (php-amqplib and
    # Symfony's AMQP transport leave it to the user; RabbitMQ's guidance is
    # 100-300). Enough that the broker never waits on the client, so the
    # commit per message is what limits it, as in production.
    channel.basic_qos(prefetch_count=100)
    cursor = db.cursor()
    done = 0
    start = time.monotonic()
    for method, _properties, body in channel.consume(queue):
        cursor.execute(common.CLAIM, common.claim_args(body))
        db.commit()
        channel.basic_ack(method.delivery_tag)
        done += 1
        if done == count:
            break
    common.report("per_message", done, start)
    channel.cancel()
    amqp.close()
    db.close()


common.guarded(main)
