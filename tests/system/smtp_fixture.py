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
  plain            offers no STARTTLS, accepts every mail in clear and counts
                   them in --count-file (a client that must not send in clear
                   leaves the count at 0)
Listens on --host (default 127.0.0.1), a free port written to --port-file; a thread per
client; exits on SIGTERM. Standard library only (Debian's /usr/bin/python3).
"""
import argparse
import os
import signal
import socket
import ssl
import sys
import threading
import time

accepted = 0
lock = threading.Lock()


def count_one(count_file):
    global accepted
    with lock:
        accepted += 1
        with open(count_file + ".tmp", "w") as out:
            out.write(str(accepted))
        os.rename(count_file + ".tmp", count_file)


def serve(conn, mode, count_file, tls):
    f = conn.makefile("rb")
    conn.sendall(b"220 fixture ESMTP\r\n")
    secure = False
    while True:
        line = f.readline()
        if not line:
            return
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            offer = b"250-STARTTLS\r\n" if mode == "starttls" and not secure else b""
            conn.sendall(b"250-fixture\r\n" + offer + b"250 8BITMIME\r\n")
        elif line[:8].upper() == b"STARTTLS" and mode == "starttls" and not secure:
            conn.sendall(b"220 2.0.0 ready to start TLS\r\n")
            conn = tls.wrap_socket(conn, server_side=True)  # a refused handshake raises
            f = conn.makefile("rb")
            secure = True
        elif verb == b"MAIL" and mode == "starttls" and not secure:
            conn.sendall(b"530 5.7.0 must issue a STARTTLS command first\r\n")
        elif verb == b"MAIL":
            conn.sendall(b"250 ok\r\n")
        elif verb == b"RCPT":
            if mode == "rcpt-451":
                conn.sendall(b"451 4.3.0 mailbox busy, try later\r\n")
            elif mode == "rcpt-550" or (mode == "reject-some" and b"reject" in line.lower()):
                conn.sendall(b"550 5.1.1 no such mailbox\r\n")
            else:
                conn.sendall(b"250 ok\r\n")
        elif verb == b"DATA":
            conn.sendall(b"354 go ahead\r\n")
            while f.readline() not in (b".\r\n", b""):
                pass
            if mode == "hang-after-data":
                time.sleep(3600)  # the message is in; the reply never comes
            if mode == "slow-5s":
                time.sleep(5)
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
                             "starttls", "plain"])
    ap.add_argument("--count-file", default="/dev/null")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    tls = None
    if args.mode == "starttls":
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.cert, args.key)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, 0))
    srv.listen(64)
    with open(args.port_file + ".tmp", "w") as out:
        out.write(str(srv.getsockname()[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=client, args=(conn, args.mode, args.count_file, tls),
                         daemon=True).start()


def client(conn, mode, count_file, tls):
    try:
        serve(conn, mode, count_file, tls)
    except OSError:
        pass
    finally:
        conn.close()


if __name__ == "__main__":
    main()
