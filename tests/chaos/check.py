#!/usr/bin/python3
"""check.py - after a chaos run: did every event take effect exactly once?

usage: check.py --events FILE... --socket S --db D --record FILE --amqp-port P
                --vhost V --queues NAME... [--faults FILE] [--duration S]
                [--summary FILE]

Run it once the consumers have stopped (unacked deliveries are invisible
to a passive queue.declare). It reads the events as published (JSON lines,
duplicates included), the database as root over the socket, the SMTP
fixture's record (one line per mail: Message-ID, tab, recipient) and the
broker as guest, and asserts per event:
  - one ledger row (coupon_rules keyed by event_identifier);
  - a coupon exactly when load_test_rule says (MUG-1 worth more than 50.00);
  - each coupon and invoice mailed once, by Message-ID at the SMTP server,
    except mails recorded `unknown`: counted, sent at most once;
  - every event took effect or sits in dead_letter with a reason, and only
    ambiguous mails (class `ambiguous`) are there, each letter archived once;
  - no ledger row left `sending` or `failed`;
  - no message left in a work, delay or dead queue; the outbox drained.
Prints a JSON summary (events, faults by kind, lost, doubled, unknown, dead
letters by class, duration) and exits 1 with the first problems on stderr
when one assertion fails. Standard library, pika and pymysql only.
"""
import argparse
import collections
import hashlib
import json
import sys

import pika
import pymysql

RULE_SKU, RULE_THRESHOLD_MINOR = "MUG-1", 5000  # load_test_rule: strictly more


def message_id(handler, effect_key, domain):
    """The Message-ID orderq gives a mail (oq_mail_message_id)."""
    h = hashlib.sha256(handler.encode() + b"\0" + effect_key.encode()).hexdigest()[:32]
    return f"<{h}.{handler}@{domain}>"


def earns_coupon(data):
    total = 0
    for it in data["items"]:
        if it["sku"] == RULE_SKU:
            whole, _, cents = it["price"].partition(".")
            total += it["qty"] * (int(whole) * 100 + int(cents or 0))
    return total > RULE_THRESHOLD_MINOR


def load_events(files):
    orders, invoices, published = {}, {}, 0
    for name in files:
        with open(name) as f:
            for line in f:
                if not line.strip():
                    continue
                e = json.loads(line)
                published += 1
                d = e["event_data"]
                if e["event_code"] == "order.processing":
                    orders[e["event_identifier"]] = d
                else:
                    invoices[f"invoice:{d['invoice_id']}"] = d
    return orders, invoices, published


def queue_depths(a):
    params = pika.ConnectionParameters("127.0.0.1", a.amqp_port, a.vhost,
                                       pika.PlainCredentials("guest", "guest"))
    out = {}
    if not a.queues:
        return out
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        for q in a.queues:
            out[q] = ch.queue_declare(q, passive=True).method.message_count
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", nargs="+", required=True)
    ap.add_argument("--socket", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--mail-domain", required=True, help="the domain of smtp_from")
    ap.add_argument("--amqp-port", type=int, required=True)
    ap.add_argument("--vhost", required=True)
    ap.add_argument("--queues", nargs="*", default=[], help="none: the broker is not asked (a re-check of a kept run)")
    ap.add_argument("--faults")
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--summary")
    a = ap.parse_args()
    problems = []

    def problem(text):
        problems.append(text)

    orders, invoices, published = load_events(a.events)
    db = pymysql.connect(unix_socket=a.socket, user="root", database=a.db)
    with db.cursor() as c:
        c.execute("SELECT handler, effect_key, state FROM event_ledger")
        ledger = collections.defaultdict(list)
        for handler, key, state in c.fetchall():
            ledger[(handler, key)].append(state)
        c.execute("SELECT order_id, code FROM coupon")
        coupons = collections.defaultdict(list)
        for order_id, code in c.fetchall():
            coupons[order_id].append(code)
        c.execute("SELECT error_class, event_code, body FROM dead_letter")
        dead = c.fetchall()
        # one parking publish (host, pid, seq, when) is one letter, one row
        c.execute("""SELECT JSON_VALUE(headers, '$."x-orderq-host"'), JSON_VALUE(headers, '$."x-orderq-pid"'),
                            JSON_VALUE(headers, '$."x-orderq-seq"'), JSON_VALUE(headers, '$."x-orderq-last-failed-at"'),
                            COUNT(*), GROUP_CONCAT(id)
                     FROM dead_letter WHERE JSON_EXISTS(headers, '$."x-orderq-seq"')
                     GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1""")
        archived_twice = c.fetchall()
        c.execute("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        outbox_left = c.fetchone()[0]
    db.close()

    sent = collections.Counter()
    with open(a.record, "rb") as f:
        for line in f:
            mid = line.split(b"\t", 1)[0].decode()
            sent[mid] += 1

    dead_by_class = collections.Counter(cls for cls, _, _ in dead)
    ambiguous_keys = set()  # mails a person must look at
    for cls, code, body in dead:
        if cls != "ambiguous":
            problem(f"dead letter of class {cls!r} ({code}): {body[:200]!r}")
            continue
        letter = json.loads(body)
        if "effect_key" in letter:  # the lease sweeper's letter names the row itself
            ambiguous_keys.add(letter["effect_key"])
            continue
        d = letter["event_data"]
        ambiguous_keys.add(f"coupon:{d['coupon_code']}" if code == "coupon.email"
                           else f"invoice:{d.get('invoice_id')}")

    for host, pid, seq, at, n, ids in archived_twice:
        problem(f"one letter (host {host} pid {pid} x-orderq-seq {seq} failed at {at}) archived {n} times: rows {ids}")

    lost = doubled = unknown = mails = 0
    for key, states in ledger.items():
        if len(states) > 1:
            problem(f"{len(states)} ledger rows for {key}")
        if states[0] in ("sending", "failed"):
            problem(f"ledger row {key} left {states[0]}")

    def check_mail(handler, key, what):
        nonlocal lost, doubled, unknown, mails
        states = ledger.get((handler, key))
        n = sent[message_id(handler, key, a.mail_domain)]
        if states is None:
            lost += 1
            problem(f"{what}: no {handler} ledger row for {key}")
        elif states[0] == "unknown":
            unknown += 1
            if key not in ambiguous_keys:
                problem(f"{what}: {key} is unknown but not parked as an ambiguous dead letter")
            if n > 1:
                doubled += 1
                problem(f"{what}: {key} unknown, yet mailed {n} times")
        elif states[0] == "sent":
            mails += 1
            if n != 1:
                problem(f"{what}: {key} is sent, mailed {n} times")
                if n > 1:
                    doubled += 1
                else:
                    lost += 1

    for ident, d in orders.items():
        if ("coupon_rules", ident) not in ledger:
            lost += 1
            problem(f"order {ident}: no ledger row")
            continue
        got = coupons.get(d["order_id"], [])
        want = 1 if earns_coupon(d) else 0
        if len(got) != want:
            problem(f"order {ident}: {len(got)} coupons, the rule says {want}")
            if len(got) > want:
                doubled += 1
            else:
                lost += 1
        for code in got:
            check_mail("coupon_mail", f"coupon:{code}", f"order {ident}")
    for key in invoices:
        check_mail("invoice_mail", key, "invoice")
    if "-" in sent:
        problem(f"{sent['-']} mails without a Message-ID")
    twice = [mid for mid, n in sent.items() if n > 1 and mid != "-"]
    if twice:  # also a mail of a key the loop above never reached
        problem(f"{len(twice)} Message-IDs mailed more than once, e.g. {twice[:3]}")
        doubled = max(doubled, len(twice))
    extra = set(coupons) - {d["order_id"] for d in orders.values()}
    if extra:
        problem(f"coupons for orders never published: {sorted(extra)[:5]}")

    depths = queue_depths(a)
    for q, n in depths.items():
        if n:
            problem(f"{n} messages left in {q}")
    if outbox_left:
        problem(f"{outbox_left} outbox rows not relayed")

    faults = collections.Counter()
    if a.faults:
        with open(a.faults) as f:
            for line in f:
                if line.strip():
                    faults[line.split()[0]] += 1
    summary = {"events": published, "orders": len(orders),
               "invoices": len(invoices), "coupons": sum(len(v) for v in coupons.values()),
               "mails_sent": mails, "faults": dict(sorted(faults.items())), "lost": lost,
               "doubled": doubled, "unknown": unknown, "dead_letters": dict(dead_by_class),
               "letters_archived_twice": len(archived_twice), "outbox_left": outbox_left, "queues_left": sum(depths.values()),
               "problems": len(problems), "duration_s": round(a.duration)}
    text = json.dumps(summary)
    print(text)
    if a.summary:
        with open(a.summary, "w") as f:
            f.write(text + "\n")
    for p in problems[:20]:
        print("check: " + p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
