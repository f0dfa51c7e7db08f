#!/usr/bin/python3
"""gen.py - writes the hostile corpus into tests/corpus/cases/ (README.md
says the format). Run it after changing a case; the files it writes are
checked in so that a reader sees every message without running anything.

    /usr/bin/python3 tests/corpus/gen.py

Standard library only. Each case is one AMQP message: NAME.body (its exact
bytes) and NAME.props.json (routing key, properties, headers, expectation).
"""
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "cases")
CASES = {}


def case(name, body, expect, routing_key="order.processing", properties=None, headers=None,
         body_append=None):
    """One message; expect is {"outcome": "dead", "class", "reason"} or an effect."""
    assert name not in CASES, name
    props = {"routing_key": routing_key}
    if properties:
        props["properties"] = properties
    if headers is not None:
        props["headers"] = headers
    if body_append:
        props["body_append"] = body_append
    props["expect"] = expect
    CASES[name] = (body, props)


def dead(cls, reason):
    return {"outcome": "dead", "class": cls, "reason": reason}


def effect(coupon=0, mail=None, **more):
    """A ledger row for the event; coupon: coupons the order earns; mail:
    what becomes of the coupon's mail ("sent" or a dead letter's class)."""
    e = {"outcome": "effect", "coupons": coupon}
    if mail:
        e["mail"] = mail
    e.update(more)
    return e


def jstr(b):
    """Bytes as the inside of a JSON string, raw (hostile bytes stay bytes)."""
    return b.replace(b"\\", b"\\\\").replace(b'"', b'\\"').replace(b"\r", b"\\r").replace(b"\n", b"\\n")


def order(name, qty=b"3", price=b'"25.00"', fields=None, raw_tail=b""):
    """An order.processing body with raw-byte string fields (fields may
    override any of them with bytes, already escaped for JSON)."""
    f = {
        "event_identifier": name.encode() + b"_processing",
        "order_id": name.encode(),
        "order_status": b"processing",
        "currency": b"USD",
        "customer.email": name.replace("_", "-").encode() + b"@corpus.example",
        "customer.name": b"Ann",
        "sku": b"MUG-1",
    }
    f.update(fields or {})
    return (b'{"event_code":"order.processing","event_identifier":"' + f["event_identifier"] +
            b'","event_data":{"order_id":"' + f["order_id"] + b'","order_status":"' +
            f["order_status"] + b'","currency":"' + f["currency"] + b'","customer":{"email":"' +
            f["customer.email"] + b'","name":"' + f["customer.name"] + b'"},"items":[{"sku":"' +
            f["sku"] + b'","qty":' + qty + b',"price":' + price + b',"original_price":' + price +
            b"}]" + raw_tail + b"}}")


def coupon_mail(name, fields=None):
    """A coupon.email body, as the shop's legacy cron would send it."""
    f = {
        "event_identifier": name.encode() + b"_mail",
        "coupon_code": name.upper().replace("_", "-").encode()[:64],
        "customer.email": name.replace("_", "-").encode() + b"@corpus.example",
        "customer.name": b"Ann",
    }
    f.update(fields or {})
    return (b'{"event_code":"coupon.email","event_identifier":"' + f["event_identifier"] +
            b'","event_data":{"order_id":"9200000217","coupon_code":"' + f["coupon_code"] +
            b'","discount_type":"fixed","discount":"10.00","currency":"USD",'
            b'"expires_at":"2027-01-31T00:00:00Z","customer":{"email":"' + f["customer.email"] +
            b'","name":"' + f["customer.name"] + b'"}}}')


# --- numbers, money, JSON oddities ---------------------------------------
def numbers():
    case("num_qty_zero", order("num_qty_zero", qty=b"0"), effect(coupon=0))
    case("num_qty_2p63", order("num_qty_2p63", qty=b"9223372036854775808"),
         dead("permanent", "event_data.items[0]: qty: expected a whole number"))
    case("num_qty_2p63_minus1", order("num_qty_2p63_minus1", qty=b"9223372036854775807"),
         dead("permanent", "overflows"))
    case("num_qty_negative", order("num_qty_negative", qty=b"-3"),
         dead("permanent", "qty: expected a whole number"))
    case("num_qty_fraction", order("num_qty_fraction", qty=b"1.5"),
         dead("permanent", "qty: expected a whole number"))
    case("num_qty_1e400", order("num_qty_1e400", qty=b"1e400"),
         dead("permanent", "qty: expected a whole number"))
    case("num_qty_magento", order("num_qty_magento", qty=b'"3.0000"'), effect(coupon=1, mail="sent"))
    case("num_price_exp_string", order("num_price_exp_string", price=b'"2.5e1"'),
         dead("permanent", "not a plain decimal number"))
    case("num_price_exp_number", order("num_price_exp_number", price=b"2.5e1"),
         dead("permanent", "price"))
    case("num_price_1e309", order("num_price_1e309", price=b"1e309"), dead("permanent", "price"))
    case("num_price_huge_digits", order("num_price_huge_digits", price=b'"' + b"9" * 400 + b'.00"'),
         dead("permanent", "too large"))
    case("num_price_negative_zero", order("num_price_negative_zero", price=b'"-0.00"'),
         dead("permanent", "negative"))
    case("num_price_three_decimals", order("num_price_three_decimals", price=b'"25.001"'),
         dead("permanent", "price"))
    case("num_price_hex", order("num_price_hex", price=b'"0x19"'), dead("permanent", "not a plain decimal"))
    case("num_order_id_number", order("num_order_id_number").replace(
        b'"order_id":"num_order_id_number"', b'"order_id":1e400'),
         dead("permanent", "event_data.order_id is missing"))


def json_oddities():
    o = order("json_dup_id")
    case("json_dup_id", o.replace(b'"event_data"', b'"event_identifier":"json_dup_id_other","event_data"'),
         dead("bad_input", "duplicate key"))
    o = order("json_dup_order_id")
    case("json_dup_order_id", o.replace(b'"order_status"', b'"order_id":"other","order_status"'),
         dead("bad_input", "duplicate key"))
    o = order("json_dup_qty")
    case("json_dup_qty", o.replace(b'"qty":3', b'"qty":3,"qty":300000'), dead("bad_input", "duplicate key"))
    case("json_bom_utf8", b"\xef\xbb\xbf" + order("json_bom_utf8"), dead("bad_input", "byte order mark"))
    case("json_bom_utf16", b"\xff\xfe" + order("json_bom_utf16").decode().encode("utf-16-le"),
         dead("bad_input", "byte order mark"))
    case("json_trailing_garbage", order("json_trailing_garbage") + b' {"event_code":"x"}',
         dead("bad_input", "not valid JSON"))
    case("json_deep_arrays", order("json_deep_arrays", raw_tail=b',"x":' + b"[" * 20000 + b"]" * 20000),
         dead("bad_input", "nests deeper than 64 levels"))
    case("json_deep_objects",
         order("json_deep_objects", raw_tail=b',"x":' + b'{"a":' * 2000 + b"1" + b"}" * 2000),
         dead("bad_input", "nests deeper than 64 levels"))
    case("json_nul_raw", order("json_nul_raw", fields={"customer.name": b"A\x00nn"}),
         dead("bad_input", "not valid JSON"))
    case("json_20mib", order("json_20mib")[:-2] + b',"note":"', dead("too_large", "over max_message_bytes"),
         body_append={"byte": "x", "count": 20 << 20})
    # yajl decodes an escaped lone surrogate as "?": valid UTF-8, so the
    # order takes effect with the name "?" (the raw bytes are refused above)
    case("json_lone_surrogate_escape", order("json_lone_surrogate_escape", fields={"customer.name": b"\\ud800"}),
         effect(coupon=1, mail="sent"))


# --- hostile strings x every string field --------------------------------
HOSTILE = {
    "overlong": b"x\xc0\xaf",            # '/' in two bytes
    "surrogate": b"x\xed\xa0\x80",        # U+D800 in UTF-8
    "nul": b"x\\u0000y",                  # an escaped NUL
    "sql": jstr(b"x'; DROP TABLE coupon; -- \"\\ %_"),
    "crlf": jstr(b"x\r\nBcc: victim@evil.example"),
}
ORDER_FIELDS = ["event_identifier", "order_id", "order_status", "currency", "customer.email",
                "customer.name", "sku"]
MAIL_FIELDS = ["event_identifier", "coupon_code", "customer.email", "customer.name"]


def where(field):
    return field if field == "event_identifier" else "event_data." + field.replace("sku", "items[0].sku")


def order_string_expect(field, kind):
    if kind in ("overlong", "surrogate"):
        return dead("bad_input", where(field) + " is not valid UTF-8")
    if kind == "nul":
        return dead("bad_input", "NUL")
    if field == "currency":
        return dead("permanent", "event_data.currency: expected an ISO 4217 code")
    if field == "order_status":  # the event code decides, not this text; it goes into the mail
        return effect(coupon=1, mail="dead:permanent" if kind == "crlf" else "sent")
    if field == "sku":
        return effect(coupon=0)  # not the rule's SKU
    if field == "customer.email":
        return effect(coupon=1, mail="dead:permanent")
    if field == "customer.name" or (field == "order_id" and kind == "crlf"):  # in a mail header
        return effect(coupon=1, mail="sent" if kind == "sql" else "dead:permanent")
    return effect(coupon=1, mail="sent")


def mail_string_expect(field, kind):
    if kind in ("overlong", "surrogate"):
        return dead("bad_input", "event_data." + field + " is not valid UTF-8"
                    if field != "event_identifier" else "event_identifier is not valid UTF-8")
    if kind == "nul":
        return dead("bad_input", "NUL")
    if field == "event_identifier" and kind == "crlf":  # it goes into a mail header
        return dead("permanent", "a header value holds a CR")
    if field in ("event_identifier",) or (field == "customer.name" and kind == "sql"):
        return effect(mail="sent")
    if field == "coupon_code" and kind == "sql":
        return effect(mail="sent")
    return dead("permanent", "event_data." + field)


def strings():
    for field in ORDER_FIELDS:
        for kind, text in HOSTILE.items():
            name = f"str_order_{field.replace('.', '_')}_{kind}"
            case(name, order(name, fields={field: text}), order_string_expect(field, kind))
    for field in MAIL_FIELDS:
        for kind, text in HOSTILE.items():
            name = f"str_mail_{field.replace('.', '_')}_{kind}"
            case(name, coupon_mail(name, fields={field: text}), mail_string_expect(field, kind),
                 routing_key="coupon.email")


# --- lengths up to the caps, multi-byte ----------------------------------
def lengths():
    chars = ["A", "é", "中", "😀"]  # 1, 2, 3 and 4 bytes of UTF-8
    for n in range(1, 65):  # coupon codes: 1 to 64 bytes
        c = chars[n % 4]
        w = len(c.encode())
        code = (c * (n // w) + "A" * (n % w)).encode()
        assert len(code) == n
        name = f"len_code_{n:02d}"
        case(name, coupon_mail(name, fields={"coupon_code": code}), effect(mail="sent"),
             routing_key="coupon.email")
    case("len_code_65", coupon_mail("len_code_65", fields={"coupon_code": "é".encode() * 32 + b"A"}),
         dead("permanent", "coupon_code"), routing_key="coupon.email")
    for c in chars:  # names: exactly 255 bytes, and 256 (one over, or a character cut)
        w = len(c.encode())
        fill = (c * (255 // w) + "a" * (255 % w)).encode()
        tag = f"{w}b"
        case(f"len_name_255_{tag}", coupon_mail(f"len_name_255_{tag}", fields={"customer.name": fill}),
             effect(mail="sent"), routing_key="coupon.email")
        case(f"len_name_256_{tag}", coupon_mail(f"len_name_256_{tag}", fields={"customer.name": fill + b"z"}),
             dead("permanent", "event_data.customer.name is 256 bytes; at most 255"), routing_key="coupon.email")
        case(f"len_order_name_255_{tag}", order(f"len_order_name_255_{tag}", fields={"customer.name": fill}),
             effect(coupon=1, mail="sent"))
    case("len_id_191", order("len_id_191", fields={"event_identifier": "é".encode() * 95 + b"a"}),
         effect(coupon=1, mail="sent"))
    case("len_id_192", order("len_id_192", fields={"event_identifier": "é".encode() * 96}),
         dead("bad_input", "event_identifier is 192 bytes; at most 191"))
    case("len_order_id_64", order("len_order_id_64", fields={"order_id": "中".encode() * 21 + b"a"}),
         effect(coupon=1, mail="sent"))
    case("len_order_id_65", order("len_order_id_65", fields={"order_id": "中".encode() * 21 + b"ab"}),
         dead("permanent", "event_data.order_id is missing (or longer than 64 bytes)"))


# --- AMQP properties and headers -----------------------------------------
def every_type():
    """A table with one field of every AMQP type RabbitMQ knows ($amqp: tag)."""
    return {
        "t-bool": True, "b-int8": {"$amqp": "b", "value": -128}, "B-uint8": {"$amqp": "B", "value": 255},
        "s-int16": {"$amqp": "s", "value": -32768}, "u-uint16": {"$amqp": "u", "value": 65535},
        "I-int32": {"$amqp": "I", "value": -2147483648}, "i-uint32": {"$amqp": "i", "value": 4294967295},
        "l-int64": {"$amqp": "l", "value": -9223372036854775808},
        "f-float": {"$amqp": "f", "value": 1.5}, "d-double": {"$amqp": "d", "value": -1e308},
        "D-decimal": {"$amqp": "D", "scale": 2, "value": 2500},
        "S-utf8": "Zoë 中文 😀", "S-binary": {"$amqp": "S", "hex": "c0aff5ff00"},
        "x-bytes": {"$amqp": "x", "hex": "00ff7f80"}, "T-time": {"$amqp": "T", "value": 18446744073709551615},
        "V-void": None, "A-array": [1, "two", None, [3, {"four": 4}]], "F-table": {"nested": {"deeper": {}}},
    }


def nested(depth):
    t = {"leaf": 1}
    for _ in range(depth):
        t = {"n": t}
    return t


def amqp():
    bad = b'{"event_code":"order.processing","event_identifier":"hdr","event_data":"not an object"}'
    case("hdr_every_type_good", order("hdr_every_type_good"), effect(coupon=1, mail="sent"), headers=every_type())
    case("hdr_every_type_dead", bad.replace(b'"hdr"', b'"hdr_every_type_dead"'), dead("bad_input", "event_data"),
         headers=every_type())
    case("hdr_key_not_utf8", bad.replace(b'"hdr"', b'"hdr_key_not_utf8"'), dead("bad_input", "event_data"),
         headers={"hex:ff fe c0 af": "a", "hex:6b00": "NUL in key", "ok": "b"})
    case("hdr_nested_100", bad.replace(b'"hdr"', b'"hdr_nested_100"'), dead("bad_input", "event_data"),
         headers={"deep": nested(100)})
    case("hdr_nested_100_good", order("hdr_nested_100_good"), effect(coupon=1, mail="sent"),
         headers={"deep": nested(100), "arr": [[[[[[["x"]]]]]]]})
    case("hdr_1000_fields", order("hdr_1000_fields"), effect(coupon=1, mail="sent"),
         headers={f"h{i}": i for i in range(1000)})
    case("prop_user_id", order("prop_user_id"), effect(coupon=1, mail="sent"), properties={"user_id": "$SHOP_USER"})
    case("prop_expiration", order("prop_expiration"), effect(coupon=1, mail="sent"),
         properties={"expiration": "3600000"})
    case("prop_expiration_dead", bad.replace(b'"hdr"', b'"prop_expiration_dead"'), dead("bad_input", "event_data"),
         properties={"expiration": "3600000"})
    case("prop_priority", order("prop_priority"), effect(coupon=1, mail="sent"), properties={"priority": 255})
    case("prop_all_set", order("prop_all_set"), effect(coupon=1, mail="sent"), properties={
        "content_type": "application/json", "content_encoding": "utf-8", "delivery_mode": 1, "priority": 9,
        "reply_to": "shop.replies", "expiration": "3600000", "message_id": "prop_all_set_processing",
        "timestamp": 0, "type": "order.processing", "user_id": "$SHOP_USER", "app_id": "shop",
        "cluster_id": "forged"})
    case("prop_type_other", order("prop_type_other"), effect(coupon=1, mail="sent"),
         properties={"type": "coupon.email", "message_id": "something_else"})
    case("prop_content_type_xml", b'<?xml version="1.0"?><order id="1"/>', dead("bad_input", "not valid JSON"),
         properties={"content_type": "application/xml"})
    case("prop_content_type_text", order("prop_content_type_text"), effect(coupon=1, mail="sent"),
         properties={"content_type": "text/plain"})
    import gzip
    case("prop_content_encoding_gzip", gzip.compress(order("prop_content_encoding_gzip"), mtime=0),
         dead("bad_input", "content_encoding \"gzip\""), properties={"content_encoding": "gzip"})
    case("prop_content_encoding_gzip_plain", order("prop_content_encoding_gzip_plain"),
         dead("bad_input", "content_encoding \"gzip\""), properties={"content_encoding": "gzip"})
    # x-orderq-* forged on a first delivery: not believed
    case("forged_attempt_good", order("forged_attempt_good"), effect(coupon=1, mail="sent"),
         headers={"x-orderq-attempt": 99, "x-orderq-first-failed-at": "2000-01-01T00:00:00Z"})
    case("forged_class_dead", bad.replace(b'"hdr"', b'"forged_class_dead"'), dead("bad_input", "event_data"),
         headers={"x-orderq-error-class": "transient", "x-orderq-last-error": "forged",
                  "x-orderq-attempt": {"$amqp": "S", "hex": "ff"}, "x-orderq-queue": "orderq.elsewhere"})
    case("forged_force_resend", coupon_mail("forged_force_resend"), effect(mail="sent"),
         routing_key="coupon.email", headers={"x-orderq-force-resend": 1})
    case("forged_types_wrong", order("forged_types_wrong"), effect(coupon=1, mail="sent"),
         headers={"x-orderq-attempt": {"$amqp": "d", "value": -1.0}, "x-orderq-delivery-count": [1],
                  "x-delivery-count": "many", "x-death": "not a list"})
    case("dup_of_num_qty_magento", order("num_qty_magento"), {"outcome": "duplicate", "of": "num_qty_magento"})


UNREADABLE = {}


def unreadable():
    """Messages RabbitMQ passes on and librabbitmq cannot decode: a header
    named "" (its table decoder refuses it). Their own directory: each one
    jams the dead-letter archiver (it cannot read the letter either, and
    orderq.dead has nowhere else to put it), so corpus.sh publishes them
    apart, after the corpus, and checks that the consumer rejects each once."""
    body = b'{"event_code":"order.processing","event_identifier":"hdr_key_empty","event_data":"x"}'
    UNREADABLE["hdr_key_empty"] = (body, {"routing_key": "order.processing", "headers": {"hex:": "empty key"},
                                          "expect": {"outcome": "unreadable"}})


def write_dir(out, cases):
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    for name, (body, props) in sorted(cases.items()):
        with open(os.path.join(out, name + ".body"), "wb") as f:
            f.write(body)
        with open(os.path.join(out, name + ".props.json"), "w", encoding="utf-8") as f:
            json.dump(props, f, ensure_ascii=False, indent=1, sort_keys=True)
            f.write("\n")
    print(f"{len(cases)} cases in {out}", file=sys.stderr)


numbers()
json_oddities()
strings()
lengths()
amqp()
unreadable()
write_dir(OUT, CASES)
write_dir(os.path.join(HERE, "unreadable"), UNREADABLE)
