#!/usr/bin/python3
"""corpus.py - publish the hostile corpus through the broker, and check
what became of each message (tests/system/corpus.sh runs both).

    corpus.py publish CASES_DIR VHOST USER PASSWORD
    corpus.py check CASES_DIR STATE.json

Standard library and pika only. The format is in tests/corpus/README.md.
"""
import hashlib
import json
import os
import re
import struct
import sys


def load(cases_dir):
    """{name: (body bytes, props)}, sorted by name."""
    out = {}
    for f in sorted(os.listdir(cases_dir)):
        if not f.endswith(".props.json"):
            continue
        name = f[: -len(".props.json")]
        if not re.search(os.environ.get("CORPUS_ONLY", ""), name):
            continue  # CORPUS_ONLY=REGEX: a part of the corpus, to look into one case
        with open(os.path.join(cases_dir, f), encoding="utf-8") as fh:
            props = json.load(fh)
        with open(os.path.join(cases_dir, name + ".body"), "rb") as fh:
            body = fh.read()
        fill = props.get("body_append")
        if fill:
            body += fill["byte"].encode() * fill["count"]
        out[name] = (body, props)
    return out


class Raw:
    """A header value of an explicit AMQP field type: its tag and payload."""

    def __init__(self, tag, payload):
        self.tag, self.payload = tag, payload


FIXED = {"b": ">b", "B": ">B", "s": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q", "f": ">f",
         "d": ">d", "T": ">Q"}


def raw_value(v):
    tag = v["$amqp"]
    if tag in ("S", "x"):
        data = bytes.fromhex(v["hex"])
        return Raw(tag, struct.pack(">I", len(data)) + data)
    if tag == "D":
        return Raw(tag, struct.pack(">Bi", v["scale"], v["value"]))
    return Raw(tag, struct.pack(FIXED[tag], v["value"]))


def key_of(k):
    """A header key: "hex:..." is raw bytes (keys that are not UTF-8)."""
    return bytes.fromhex(k[4:]) if k.startswith("hex:") else k


def headers_of(t):
    if isinstance(t, dict):
        if "$amqp" in t:
            return raw_value(t)
        return {key_of(k): headers_of(v) for k, v in t.items()}
    if isinstance(t, list):
        return [headers_of(v) for v in t]
    return t


def patch_pika():
    """pika encodes only the types Python has; teach it Raw."""
    import pika.data
    plain = pika.data.encode_value

    def encode_value(pieces, value):
        if isinstance(value, Raw):
            pieces.append(value.tag.encode() + value.payload)
            return 1 + len(value.payload)
        return plain(pieces, value)

    pika.data.encode_value = encode_value


def publish(cases_dir, vhost, user, password):
    import pika
    patch_pika()
    cases = load(cases_dir)
    params = pika.ConnectionParameters("127.0.0.1", 5672, vhost, pika.PlainCredentials(user, password))
    with pika.BlockingConnection(params) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        for name, (body, props) in cases.items():
            p = dict(props.get("properties", {}))
            if p.get("user_id") == "$SHOP_USER":
                p["user_id"] = user
            p.setdefault("delivery_mode", 2)
            p["correlation_id"] = name  # how the checker finds its dead letter
            if "headers" in props:
                p["headers"] = headers_of(props["headers"])
            ch.basic_publish(props.get("exchange", "shop.events"), props["routing_key"], body,
                             pika.BasicProperties(**p), mandatory=True)
    print(len(cases))


def ident_of(body):
    try:
        return json.loads(body)["event_identifier"]
    except Exception:
        return None


def check(cases_dir, state_file):
    """STATE.json: {"dead": [rows], "ledger": [rows], "coupons": [rows],
    "mails_sent": n} as corpus.sh read them. Prints one line a case."""
    with open(state_file, encoding="utf-8") as fh:
        st = json.load(fh)
    cases = load(cases_dir)
    dead = {}
    derived = {}
    bad = []
    for r in st["dead"]:
        if r["case"] in cases:
            if r["case"] in dead:
                bad.append(f"{r['case']}: two dead letters")
            dead[r["case"]] = r
        elif r.get("code") is not None:
            derived[r["code"]] = r
        else:
            bad.append(f"a dead letter of no case: {r}")
    ledger = {}
    for r in st["ledger"]:
        ledger.setdefault((r["handler"], r["eid"]), []).append(r)
    coupons = {}
    for r in st["coupons"]:
        coupons.setdefault(r["eid"], []).append(r)
    want_mails = 0
    counts = {"effect": 0, "duplicate": 0, "dead": 0}
    for name, (body, props) in cases.items():
        e = props["expect"]
        got = dead.get(name)
        counts[e["outcome"]] += 1
        if e["outcome"] == "dead":
            if got is None:
                eid = ident_of(body)
                bad.append(f"{name}: expected a dead letter {e['class']} / {e['reason']!r}; none"
                           f" (ledger rows: {sum(len(v) for k, v in ledger.items() if k[1] == eid)})")
                continue
            line = f"{got['class']:10} {got['error'][:100]}"
            if got["class"] != e["class"] or e["reason"] not in got["error"]:
                bad.append(f"{name}: expected {e['class']} / {e['reason']!r}, got {got['class']} / {got['error']!r}")
            if got["size"] != len(body):
                bad.append(f"{name}: body_size {got['size']}, sent {len(body)}")
            if got["sha"] is not None and got["sha"] != hashlib.sha256(body).hexdigest():
                bad.append(f"{name}: the archived body differs from the file")
            if got["sha"] is None and len(body) < (16 << 20):
                bad.append(f"{name}: the body was not archived")
            print(f"  {name:36} dead  {line}")
            continue
        if got is not None:
            bad.append(f"{name}: expected {e['outcome']}, got a dead letter {got['class']} / {got['error']!r}")
            continue
        eid = ident_of(body)
        handler = "coupon_mail" if props["routing_key"] == "coupon.email" else "coupon_rules"
        rows = ledger.get((handler, eid), [])
        if len(rows) != 1:
            bad.append(f"{name}: {len(rows)} ledger rows of {handler} for {eid!r}")
            continue
        if e["outcome"] == "duplicate":
            print(f"  {name:36} duplicate of {e['of']}")
            continue
        if handler == "coupon_mail":
            if rows[0]["state"] != "sent":
                bad.append(f"{name}: the mail is {rows[0]['state']}, not sent")
            want_mails += 1
            print(f"  {name:36} mail  {rows[0]['state']}")
            continue
        cs = coupons.get(eid, [])
        if len(cs) != e["coupons"]:
            bad.append(f"{name}: {len(cs)} coupons, expected {e['coupons']}")
            continue
        mail = "-"
        for c in cs:
            mrows = [r for (h, _), rs in ledger.items() if h == "coupon_mail" for r in rs
                     if r["key"] == "coupon:" + c["code"]]
            d = derived.pop(c["code"], None)
            mail = (mrows[0]["state"] if mrows else "none") if d is None else "dead:" + d["class"]
            if mail != e.get("mail"):
                bad.append(f"{name}: its coupon mail is {mail}, expected {e.get('mail')}"
                           + (f" ({d['error']})" if d else ""))
            if mail == "sent":
                want_mails += 1
        print(f"  {name:36} effect coupons {len(cs)} mail {mail}")
    for code, r in derived.items():
        bad.append(f"a dead coupon mail nobody expected: {code}: {r['class']} / {r['error']}")
    if st["mails_sent"] != want_mails:
        bad.append(f"mails to corpus.example: {st['mails_sent']}, expected {want_mails} (one a sent mail)")
    print(f"{len(cases)} cases: {counts['effect']} effects, {counts['duplicate']} duplicates, "
          f"{counts['dead']} dead letters; {want_mails} mails")
    if bad:
        print("\n".join(bad), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1] == "publish":
        publish(*sys.argv[2:6])
    else:
        check(*sys.argv[2:4])
