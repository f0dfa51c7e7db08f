#!/usr/bin/python3
"""gen_load.py - the chaos run's events as JSON lines, in publish order.

usage: gen_load.py COUNT --start N --domain D [--seed S] [--dup-percent P] [--invoice-every K]

COUNT order.processing events. Their quantities vary (1 to 4 x MUG-1 at
25.00, some of another SKU), so with load_test_rule (MUG-1, strictly more
than 50.00) some earn a coupon and some do not, and the checker must tell
which. Every K-th order also has an invoice.created event, every other one
of those an invoice.updated for the same invoice (one invoice mail each).
P percent of all events are written a second time, later in the stream (the
publisher gives every line a new message id). Every customer has an address
of their own at D, so the checker can count mails per order.
Deterministic for a given seed.
"""
import argparse
import json
import random


def order(i, order_id, rng, domain):
    qty = rng.choice([1, 2, 3, 3, 3, 4])
    sku = "MUG-1" if rng.random() < 0.9 else "TEE-9"
    return {"event_code": "order.processing", "event_identifier": f"{order_id}_processing",
            "created_at": "2026-12-01T10:00:00Z",
            "event_data": {"order_id": order_id, "order_status": "processing", "currency": "USD",
                           "customer": {"email": f"o{order_id}@{domain}", "name": f"Customer {i}"},
                           "items": [{"sku": sku, "qty": qty, "price": "25.00",
                                      "original_price": "25.00"}]}}


def invoices(order_id, updated, domain):
    data = {"invoice_id": f"7{order_id}", "increment_id": f"INV-{order_id}", "order_id": order_id,
            "currency": "USD", "customer": {"email": f"i{order_id}@{domain}", "name": "Invoice Customer"},
            "items": [{"sku": "MUG-1", "name": "Mug", "qty": 2, "price": "30.00"}],
            "totals": {"subtotal": "60.00", "tax": "4.80", "shipping": "5.00", "grand_total": "69.80"}}
    out = [{"event_code": "invoice.created", "event_identifier": f"{order_id}_invoice_created",
            "event_data": data}]
    if updated:
        out.append({"event_code": "invoice.updated", "event_identifier": f"{order_id}_invoice_updated",
                    "event_data": data})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("count", type=int)
    ap.add_argument("--start", type=int, required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dup-percent", type=float, default=5.0)
    ap.add_argument("--invoice-every", type=int, default=20)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    events = []
    for i in range(a.count):
        order_id = str(a.start + i)
        events.append(order(i, order_id, rng, a.domain))
        if a.invoice_every and i % a.invoice_every == 0:
            events.extend(invoices(order_id, (i // a.invoice_every) % 2 == 1, a.domain))
    out = list(events)
    for i, e in enumerate(events):
        if rng.random() * 100 < a.dup_percent:
            out.insert(rng.randrange(min(i + 1, len(out)), len(out) + 1), e)
    for e in out:
        print(json.dumps(e))


if __name__ == "__main__":
    main()
