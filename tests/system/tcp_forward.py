#!/usr/bin/python3
"""tcp_forward.py - forward one TCP port to another, for the system tests.

usage: tcp_forward.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT
                      [--ready-file PATH]

Bytes go both ways unchanged, a thread pair per connection. A test makes a
server "go down" by not running this yet (or killing it) and "come back" by
starting it on the same port. SIGUSR1 makes the server go silent instead,
as a node that lost power or was cut off: from then on nothing is read or
written either way and every connection stays open (no RST, no FIN; new
ones are accepted and left silent too). --listen with port 0 picks a free
port; --ready-file gets the listening address once it accepts. SIGTERM
exits. Standard library only.
"""
import argparse
import os
import select
import signal
import socket
import sys
import threading
import time

frozen = threading.Event()


def pump(src, dst):
    try:
        while not frozen.is_set():
            if not select.select([src], [], [], 0.1)[0]:
                continue  # looks again: a freeze must be seen while nothing flows
            data = src.recv(65536)
            if not data or frozen.is_set():
                break
            dst.sendall(data)
    except OSError:
        pass
    while frozen.is_set():  # silent: both sockets stay open, unread
        time.sleep(3600)
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--ready-file")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    up_host, up_port = args.upstream.rsplit(":", 1)
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, int(port)))
    server.listen(16)
    signal.signal(signal.SIGUSR1, lambda *_: frozen.set())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.ready_file:
        with open(args.ready_file + ".tmp", "w") as fh:
            fh.write("%s:%d" % server.getsockname())
        os.rename(args.ready_file + ".tmp", args.ready_file)
    while True:
        client, _ = server.accept()
        if frozen.is_set():
            threading.Thread(target=pump, args=(client, client), daemon=True).start()
            continue
        try:
            upstream = socket.create_connection((up_host, int(up_port)), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()


if __name__ == "__main__":
    main()
