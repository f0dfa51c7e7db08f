#!/usr/bin/python3
"""corpus_load.py - the hostile corpus (tests/corpus/cases) mixed into the
chaos load: each case published once, as the shop, at a moment drawn from
the seed within the load's time, while the faults run.

usage: OQ_CHAOS_PASSWORD=W corpus_load.py CASES_DIR --port P --vhost V --user U
                  --seconds S [--seed N] --out FILE

A case whose publish was not confirmed (the broker went away) is published
again once the broker is back, as a shop does; it may then be on the broker
twice. FILE gets {case: copies published} so the checker knows which cases
may come out twice (two dead letters, or a duplicate). The format of a case
is tests/corpus/README.md; corpus.py builds its properties and headers.
"""
import argparse
import json
import os
import random
import sys
import time

import pika

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402  (tests/corpus/corpus.py: load, headers_of, patch_pika)
from publish import connect  # noqa: E402  (the load's own publisher: same connection)


def properties(name, props, user):
    p = dict(props.get("properties", {}))
    if p.get("user_id") == "$SHOP_USER":
        p["user_id"] = user
    p.setdefault("delivery_mode", 2)
    p["correlation_id"] = name  # how the checker finds the case's dead letter
    if "headers" in props:
        p["headers"] = corpus.headers_of(props["headers"])
    return pika.BasicProperties(**p)


def publish_one(a, state, name, body, props):
    """Publish until confirmed; returns how many times it went out (a
    publish that was not confirmed may still have reached a queue; one whose
    connection could not be opened did not)."""
    out = 0
    while True:
        try:
            if state["ch"] is None:
                state["conn"], state["ch"] = connect(a)
            out += 1
            state["ch"].basic_publish(props.get("exchange", "shop.events"), props["routing_key"], body,
                                      properties(name, props, a.user), mandatory=True)
            return out
        except (pika.exceptions.AMQPError, OSError) as e:
            print(f"corpus_load.py: {name}: {type(e).__name__} {e}; publishing it again", file=sys.stderr)
            state["conn"] = state["ch"] = None
            time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cases")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--vhost", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    corpus.patch_pika()
    cases = corpus.load(a.cases)
    rng = random.Random(a.seed)
    # the moments, sorted: the cases in a seeded order among the orders
    plan = sorted((rng.uniform(0, a.seconds), name) for name in cases)
    state = {"conn": None, "ch": None}
    copies = {}
    started = time.monotonic()
    for at, name in plan:
        ahead = started + at - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        body, props = cases[name]
        copies[name] = publish_one(a, state, name, body, props)
        with open(a.out, "w") as f:  # as it goes: a run that fails midway still says what went out
            json.dump(copies, f)
    if state["conn"] is not None:
        state["conn"].close()
    print(json.dumps({"cases": len(copies), "published_again": sum(n - 1 for n in copies.values()),
                      "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
