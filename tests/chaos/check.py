#!/usr/bin/python3
"""check.py - after a chaos run: did every event take effect exactly once?

usage: check.py --events FILE... --socket S --db D --record FILE --amqp-port P
                --vhost V --queues NAME... [--faults FILE] [--duration S]
                [--corpus CASES_DIR --corpus-published FILE] [--summary FILE]

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
  - no message left in a work, delay or dead queue; the outbox drained;
  - with --corpus: each hostile case mixed into the load (corpus_load.py)
    ended as its props.json expects (tests/corpus/README.md): a dead letter
    of its class and reason, its body archived byte for byte, or its effect,
    where a mail may also be `unknown` and parked; the 20 MiB body waits in
    orderq.dead.held.
Prints a JSON summary (events, faults by kind, lost, doubled, unknown, dead
letters by class, duration) and exits 1 with the first problems on stderr
when one assertion fails. Standard library, pika and pymysql only.
"""
import argparse
import collections
import hashlib
import json
import os
import sys

import pika
import pymysql

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus"))
import corpus  # noqa: E402  (tests/corpus/corpus.py: load, ident_of)

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


def held_letter_keys(a):
    """The x-orderq-letter-key of each letter in orderq.dead.held, read
    without taking them (not acked: they go back when the channel closes)."""
    params = pika.ConnectionParameters("127.0.0.1", a.amqp_port, a.vhost,
                                       pika.PlainCredentials("guest", "guest"))
    keys = []
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        while True:
            method, props, _ = ch.basic_get("orderq.dead.held", auto_ack=False)
            if method is None:
                return keys
            keys.append((props.headers or {}).get("x-orderq-letter-key"))


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
    ap.add_argument("--corpus", help="the hostile cases mixed into the load (corpus_load.py)")
    ap.add_argument("--corpus-published", help="corpus_load.py's --out: copies published of each case")
    ap.add_argument("--summary")
    a = ap.parse_args()
    problems = []

    def problem(text):
        problems.append(text)

    orders, invoices, published = load_events(a.events)
    db = pymysql.connect(unix_socket=a.socket, user="root", database=a.db)
    with db.cursor() as c:
        c.execute("SELECT handler, effect_key, state, event_identifier FROM event_ledger")
        ledger = collections.defaultdict(list)
        by_eid = collections.defaultdict(list)  # (handler, event_identifier): effect keys
        for handler, key, state, eid in c.fetchall():
            ledger[(handler, key)].append(state)
            by_eid[(handler, eid)].append(key)
        c.execute("SELECT order_id, code, event_identifier FROM coupon")
        coupons = collections.defaultdict(list)
        coupons_by_eid = collections.defaultdict(list)
        for order_id, code, eid in c.fetchall():
            coupons[order_id].append(code)
            coupons_by_eid[eid].append(code)
        # a corpus case's letter carries its name as correlation_id (corpus_load.py)
        c.execute("""SELECT error_class, event_code, body, error, body_size,
                            IF(LENGTH(body) = body_size, SHA2(body, 256), NULL),
                            JSON_VALUE(properties, '$.correlation_id'),
                            CONCAT_WS('/', JSON_VALUE(headers, '$."x-orderq-host"'), JSON_VALUE(headers, '$."x-orderq-pid"'),
                                      JSON_VALUE(headers, '$."x-orderq-seq"')) FROM dead_letter""")
        dead = c.fetchall()
        # one parking publish (host, pid, seq, when) is one letter, one row
        c.execute("""SELECT JSON_VALUE(headers, '$."x-orderq-host"'), JSON_VALUE(headers, '$."x-orderq-pid"'),
                            JSON_VALUE(headers, '$."x-orderq-seq"'), JSON_VALUE(headers, '$."x-orderq-last-failed-at"'),
                            COUNT(*), GROUP_CONCAT(id)
                     FROM dead_letter WHERE JSON_EXISTS(headers, '$."x-orderq-seq"')
                     GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1""")
        archived_twice = c.fetchall()
        c.execute("SELECT letter_key FROM dead_letter WHERE error LIKE '%kept in queue orderq.dead.held%'")
        held_rows = {k for (k,) in c.fetchall()}
        c.execute("SELECT COUNT(*) FROM outbox WHERE published_at IS NULL")
        outbox_left = c.fetchone()[0]
    db.close()

    sent = collections.Counter()
    with open(a.record, "rb") as f:
        for line in f:
            mid = line.split(b"\t", 1)[0].decode()
            sent[mid] += 1

    cases = corpus.load(a.corpus) if a.corpus else {}
    copies = {}
    if a.corpus_published:
        with open(a.corpus_published) as f:
            copies = json.load(f)
    dead_by_class = collections.Counter(row[0] for row in dead)
    parked_again = 0  # a message parked once more: its consumer died between the letter's confirm and its ack
    ambiguous_keys = set()  # mails a person must look at
    case_letters = collections.defaultdict(list)  # corpus case: its letters
    derived_letters = {}  # coupon code: the letter of a coupon mail the relay made of a corpus order
    for cls, code, body, error, size, sha, case, parking in dead:
        if cls != "ambiguous":
            if case in cases:
                case_letters[case].append((cls, error, size, sha, parking))
            elif case is None and code == "coupon.email" and cases:
                derived_letters[json.loads(body)["event_data"]["coupon_code"]] = (cls, error)
            else:
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

    def check_case_letters(name, body, e, letters):
        nonlocal parked_again
        if not letters:
            problem(f"corpus {name}: no dead letter, expected {e['class']} / {e['reason']!r}")
        # more than one only from distinct parkings (a redelivery parked
        # again); one parking archived twice is letters_archived_twice
        parkings = collections.Counter(p for *_, p in letters)
        if len(parkings) != len(letters):
            problem(f"corpus {name}: one parking archived as several letters: {parkings}")
        parked_again += max(0, len(letters) - 1)
        for cls, error, size, sha, _ in letters:
            if cls != e["class"] or e["reason"] not in error:
                problem(f"corpus {name}: expected {e['class']} / {e['reason']!r}, got {cls} / {error!r}")
            if size != len(body):
                problem(f"corpus {name}: body_size {size}, sent {len(body)}")
            if sha is not None and sha != hashlib.sha256(body).hexdigest():
                problem(f"corpus {name}: the archived body differs from the case's")
            if sha is None and len(body) < (16 << 20):
                problem(f"corpus {name}: the body was not archived")

    def check_case_coupon_mail(name, code, want):
        derived = derived_letters.pop(code, None)
        key = f"coupon:{code}"
        if want == "sent":  # or unknown and parked, under the faults
            if derived:
                problem(f"corpus {name}: its coupon mail is a dead letter {derived}, expected sent")
            check_mail("coupon_mail", key, f"corpus {name}")
        elif derived is None or "dead:" + derived[0] != want:
            problem(f"corpus {name}: its coupon mail is {derived}, expected {want}")
        elif sent[message_id("coupon_mail", key, a.mail_domain)]:
            problem(f"corpus {name}: its coupon mail died ({derived[0]}) yet reached the server")

    outcomes = collections.Counter()
    for name, (body, props) in cases.items():
        e = props["expect"]
        outcomes[e["outcome"]] += 1
        if name not in copies:
            problem(f"corpus {name}: never published")
            continue
        letters = case_letters.pop(name, [])
        if e["outcome"] == "dead":
            check_case_letters(name, body, e, letters)
            lost += not letters
            continue
        if letters:
            problem(f"corpus {name}: expected {e['outcome']}, got dead letters {letters}")
            continue
        eid = corpus.ident_of(body)
        handler = "coupon_mail" if props["routing_key"] == "coupon.email" else "coupon_rules"
        keys = by_eid.get((handler, eid), [])
        if len(keys) != 1:
            problem(f"corpus {name}: {len(keys)} ledger rows of {handler} for {eid!r}")
            lost += not keys
            continue
        if e["outcome"] == "duplicate":
            continue
        if handler == "coupon_mail":
            check_mail("coupon_mail", keys[0], f"corpus {name}")
            continue
        got = coupons_by_eid.get(eid, [])
        if len(got) != e["coupons"]:
            problem(f"corpus {name}: {len(got)} coupons, expected {e['coupons']}")
            continue
        for code in got:
            check_case_coupon_mail(name, code, e.get("mail"))
    for code, letter in derived_letters.items():
        problem(f"a dead coupon mail no corpus case expects: {code}: {letter}")
    for name, letters in case_letters.items():
        problem(f"dead letters of a case not in the corpus: {name}: {letters}")
    if "-" in sent:
        problem(f"{sent['-']} mails without a Message-ID")
    twice = [mid for mid, n in sent.items() if n > 1 and mid != "-"]
    if twice:  # also a mail of a key the loop above never reached
        problem(f"{len(twice)} Message-IDs mailed more than once, e.g. {twice[:3]}")
        doubled = max(doubled, len(twice))
    corpus_eids = {corpus.ident_of(body) for body, _ in cases.values()}
    extra = {eid for eid in coupons_by_eid if eid not in orders and eid not in corpus_eids}
    if extra:
        problem(f"coupons for events never published: {sorted(extra)[:5]}")

    depths = queue_depths(a)
    # letters too large for a row wait whole in orderq.dead.held, each
    # matched to its row by x-orderq-letter-key; a crash between the held
    # publish's confirm and the ack puts one there twice (docs/dlq.md)
    held_keys = held_letter_keys(a) if "orderq.dead.held" in depths else None
    if held_keys is not None and set(held_keys) != held_rows:
        problem(f"orderq.dead.held holds letters {sorted(map(str, held_keys))}, its rows say {sorted(held_rows)}")
    for q, n in depths.items():
        if n and q != "orderq.dead.held":
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
               "letters_archived_twice": len(archived_twice), "corpus_letters_parked_again": parked_again, "outbox_left": outbox_left, "queues_left": sum(depths.values()) - depths.get("orderq.dead.held", 0),
               "held": depths.get("orderq.dead.held", 0),
               "held_twice": len(held_keys) - len(set(held_keys)) if held_keys else 0,
               "corpus": {"cases": len(cases), **dict(sorted(outcomes.items())),
                          "published_again": sum(n - 1 for n in copies.values())},
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
