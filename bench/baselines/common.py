"""common.py - what both Python baselines share: the servers from orderq's
own ORDERQ_AMQP_URL / ORDERQ_MYSQL_URL, the claim statement and the result.

Exit codes as the C bench tools: 64 a bad argument, 69 a server that cannot
be reached.
"""
import json
import os
import sys
import time
import urllib.parse

import pika
import pymysql

# The same ledger table and unique key as orderq: (handler, effect_key)
# decides, so a redelivered event is claimed once.
CLAIM = ("INSERT IGNORE INTO event_ledger (handler, effect_key, event_identifier, event_code)"
         " VALUES ('baseline', %s, %s, %s)")


def usage(name):
    """QUEUE COUNT from argv, or exit 64 naming what is wrong."""
    if len(sys.argv) != 3:
        print(f"usage: {name} QUEUE COUNT", file=sys.stderr)
        sys.exit(64)
    try:
        count = int(sys.argv[2])
    except ValueError:
        count = 0
    if count < 1:
        print(f"{name}: COUNT: expected an integer >= 1, got {sys.argv[2]!r}", file=sys.stderr)
        sys.exit(64)
    return sys.argv[1], count


def env(name):
    value = os.environ.get(name)
    if not value:
        print(f"{name}: expected a URL, it is not set", file=sys.stderr)
        sys.exit(64)
    return value


def connect_mysql():
    """pymysql from mysql://user[:pass]@host[:port]/db[?socket=PATH]."""
    url = urllib.parse.urlsplit(env("ORDERQ_MYSQL_URL"))
    query = urllib.parse.parse_qs(url.query)
    try:
        return pymysql.connect(host=url.hostname or "localhost", port=url.port or 3306,
                               user=urllib.parse.unquote(url.username or "root"),
                               password=urllib.parse.unquote(url.password or ""),
                               database=url.path.lstrip("/"),
                               unix_socket=query.get("socket", [None])[0], autocommit=False)
    except pymysql.err.OperationalError as e:
        print(f"ORDERQ_MYSQL_URL: cannot connect: {e}", file=sys.stderr)
        sys.exit(69)


def connect_amqp():
    try:
        return pika.BlockingConnection(pika.URLParameters(env("ORDERQ_AMQP_URL")))
    except pika.exceptions.AMQPError as e:
        print(f"ORDERQ_AMQP_URL: cannot connect: {e!r}", file=sys.stderr)
        sys.exit(69)


def guarded(consume):
    """Run consume(); a server that fails midway exits 69 with its error."""
    try:
        consume()
    except (pika.exceptions.AMQPError, pymysql.err.MySQLError) as e:
        print(f"{os.path.basename(sys.argv[0])}: {e!r}", file=sys.stderr)
        sys.exit(69)


def claim_args(body):
    """(effect_key, event_identifier, event_code) of one envelope."""
    event = json.loads(body)
    return event["event_identifier"], event["event_identifier"], event["event_code"]


def report(consumer, events, start):
    seconds = time.monotonic() - start
    print(json.dumps({"consumer": consumer, "events": events, "seconds": round(seconds, 3),
                      "per_second": round(events / seconds)}))
