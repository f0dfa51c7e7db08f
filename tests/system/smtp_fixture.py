#!/usr/bin/python3
"""smtp_fixture.py - a tiny SMTP server that fails on purpose, for the system tests.

usage: smtp_fixture.py --port-file PATH --mode MODE
  rcpt-451         answers RCPT TO with 451 (try again later)
  rcpt-550         answers RCPT TO with 550 (no such mailbox)
  hang-after-data  takes the whole message, final "." included, then never answers
  reject-some      550 for a recipient whose address holds "reject", accepts
                   the others and counts them in --count-file
  slow-5s          accepts every mail, answering the final "." after 5 s, and
                   counts them in --count-file
  starttls         offers STARTTLS with --cert/--key (PEM), refuses MAIL (530)
                   before it, and counts the mails taken over TLS in --count-file
  auth             offers AUTH PLAIN and LOGIN, takes mail only after a login
                   matching --auth-file (user, then password, one a line),
                   answers a wrong one 535, and stores each mail accepted as
                   --store-dir/N.eml
  plain            offers no STARTTLS, accepts every mail in clear and counts
                   them in --count-file (a client that must not send in clear
                   leaves the count at 0)
  record           accepts every mail and appends a line per mail to
                   --record-file: its Message-ID, a tab, its first recipient
                   (the chaos run counts each mail by Message-ID); with --port,
                   a restarted fixture listens where the last one did
Listens on --host (default 127.0.0.1), a free port written to --port-file; a thread per
client; exits on SIGTERM. Standard library only (Debian's /usr/bin/python3).
"""
import argparse
import base64
import os
import signal
import socket
import ssl
import sys
import threading
import time

accepted = 0
lock = threading.Lock()


def b64(text):
    try:
        return base64.b64decode(text.strip())
    except ValueError:
        return b""


def login(conn, f, line, expected):
    """AUTH PLAIN or LOGIN, with or without an initial response: True when
    the user and password are the expected ones."""
    words = line.split()
    mech = words[1].upper() if len(words) > 1 else b""
    def ask(prompt):
        conn.sendall(b"334 " + prompt + b"\r\n")
        return f.readline()
    if mech == b"PLAIN":
        parts = b64(words[2] if len(words) > 2 else ask(b"")).split(b"\0")
        return len(parts) == 3 and (parts[1], parts[2]) == expected
    if mech == b"LOGIN":
        user = b64(words[2] if len(words) > 2 else ask(b"VXNlcm5hbWU6"))
        return (user, b64(ask(b"UGFzc3dvcmQ6"))) == expected
    return False


def store_one(store_dir, data):
    global accepted
    with lock:
        accepted += 1
        with open(os.path.join(store_dir, f"{accepted}.eml"), "wb") as out:
            out.write(b"".join(data))


def count_one(count_file):
    global accepted
    with lock:
        accepted += 1
        with open(count_file + ".tmp", "w") as out:
            out.write(str(accepted))
        os.rename(count_file + ".tmp", count_file)


def record_one(record_file, data, rcpt):
    """One line per mail taken, written before the 250 that confirms it (so a
    fixture killed in between has it, as a real server may have sent it)."""
    mid = next((l.split(b":", 1)[1].strip() for l in data if l.lower().startswith(b"message-id:")), b"-")
    with lock:
        with open(record_file, "ab") as out:
            out.write(mid + b"\t" + rcpt + b"\n")


def serve(conn, mode, count_file, tls, auth, store_dir):
    f = conn.makefile("rb")
    conn.sendall(b"220 fixture ESMTP\r\n")
    secure = False
    authed = False
    rcpt = b""
    while True:
        line = f.readline()
        if not line:
            return
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            offer = b"250-STARTTLS\r\n" if mode == "starttls" and not secure else b""
            offer += b"250-AUTH PLAIN LOGIN\r\n" if mode == "auth" else b""
            conn.sendall(b"250-fixture\r\n" + offer + b"250 8BITMIME\r\n")
        elif line[:8].upper() == b"STARTTLS" and mode == "starttls" and not secure:
            conn.sendall(b"220 2.0.0 ready to start TLS\r\n")
            conn = tls.wrap_socket(conn, server_side=True)  # a refused handshake raises
            f = conn.makefile("rb")
            secure = True
        elif verb == b"AUTH" and mode == "auth":
            authed = login(conn, f, line, auth)
            conn.sendall(b"235 2.7.0 authenticated\r\n" if authed else b"535 5.7.8 bad credentials\r\n")
        elif verb == b"MAIL" and mode == "auth" and not authed:
            conn.sendall(b"530 5.7.0 authentication required\r\n")
        elif verb == b"MAIL" and mode == "starttls" and not secure:
            conn.sendall(b"530 5.7.0 must issue a STARTTLS command first\r\n")
        elif verb == b"MAIL":
            conn.sendall(b"250 ok\r\n")
        elif verb == b"RCPT":
            rcpt = rcpt or line[8:].strip().strip(b"<>")
            if mode == "rcpt-451":
                conn.sendall(b"451 4.3.0 mailbox busy, try later\r\n")
            elif mode == "rcpt-550" or (mode == "reject-some" and b"reject" in line.lower()):
                conn.sendall(b"550 5.1.1 no such mailbox\r\n")
            else:
                conn.sendall(b"250 ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 go ahead\r\n")
            data = []
            while (l := f.readline()) not in (b".\r\n", b""):
                data.append(l)
            if mode == "hang-after-data":
                time.sleep(3600)  # the message is in; the reply never comes
            if mode == "slow-5s":
                time.sleep(5)
            if mode == "auth":
                store_one(store_dir, data)
            if mode == "record":
                if l != b".\r\n":
                    return  # the client went away mid-DATA: a server takes no half mail
                record_one(count_file, data, rcpt)
                rcpt = b""
            if mode in ("slow-5s", "reject-some", "starttls", "plain"):
                count_one(count_file)
            conn.sendall(b"250 queued\r\n")
        elif verb == b"QUIT":
            conn.sendall(b"221 bye\r\n")
            return
        else:
            conn.sendall(b"250 ok\r\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--mode", required=True,
                    choices=["rcpt-451", "rcpt-550", "hang-after-data", "slow-5s", "reject-some",
                             "starttls", "plain", "auth", "record"])
    ap.add_argument("--count-file", default="/dev/null")
    ap.add_argument("--record-file", help="record: where each mail's Message-ID and recipient go")
    ap.add_argument("--port", type=int, default=0, help="0: a free one")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--auth-file", help="auth: the expected user and password, one a line")
    ap.add_argument("--store-dir", help="auth: where accepted mails are written")
    args = ap.parse_args()
    auth = None
    if args.mode == "auth":
        with open(args.auth_file, "rb") as f:
            lines = f.read().split(b"\n")
        auth = (lines[0], lines[1])
    tls = None
    if args.mode == "starttls":
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen(64)
    with open(args.port_file + ".tmp", "w") as out:
        out.write(str(srv.getsockname()[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=client, args=(conn, args.mode, args.record_file if args.mode == "record" else args.count_file, tls, auth, args.store_dir),
                         daemon=True).start()


def client(conn, mode, count_file, tls, auth, store_dir):
    try:
        serve(conn, mode, count_file, tls, auth, store_dir)
    except OSError:
        pass
    finally:
        conn.close()


if __name__ == "__main__":
    main()
