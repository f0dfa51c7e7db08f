#!/usr/bin/python3
"""gen_events.py - order.processing events as JSON lines, for the system tests.

usage: gen_events.py COUNT [--start N] [--dup-every K] [--qty Q] [--seed S]
                     [--qualify-every K]

Each order buys Q (default 3) x MUG-1 at 25.00, so with the tests' rule
(MUG-1, threshold 50.00) every order earns one coupon. --dup-every K writes
every K-th event a second time, later in the stream (a redelivery, a second
listener). --qualify-every K keeps Q only for every K-th order (i % K == 0)
and gives the others qty 1 (25.00, not over 50.00): 1/K of the orders earn a
coupon, as in bench/run. Deterministic for a given seed.
"""
import argparse
import json
import random

ap = argparse.ArgumentParser()
ap.add_argument("count", type=int)
ap.add_argument("--start", type=int, default=9200000000)
ap.add_argument("--dup-every", type=int, default=0)
ap.add_argument("--qty", type=int, default=3)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--qualify-every", type=int, default=1)
a = ap.parse_args()
if a.qualify_every < 1:
    ap.error(f"--qualify-every: expected an integer >= 1, got {a.qualify_every}")

rng = random.Random(a.seed)
events = []
for i in range(a.count):
    order = str(a.start + i)
    events.append(json.dumps({
        "event_code": "order.processing" if i % 3 else "add_order_to_queue",
        "event_identifier": f"{order}_processing",
        "created_at": "2017-02-23T11:06:40Z",
        "event_data": {"order_id": order, "order_status": "processing", "currency": "USD",
                       "customer": {"email": f"c{i}@example.com", "name": f"Customer {i}"},
                       "items": [{"sku": "MUG-1", "qty": a.qty if i % a.qualify_every == 0 else 1, "price": "25.00",
                                  "original_price": "25.00"}]}}))
out = list(events)
if a.dup_every:
    for i in range(0, a.count, a.dup_every):
        out.insert(rng.randrange(i + 1, len(out) + 1), events[i])
print("\n".join(out))
