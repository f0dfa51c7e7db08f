#!/usr/bin/python3
"""freeze_proxy.py - a TCP proxy that can go silent, as a broker on a node
that lost power or was cut off: no RST, no FIN, no bytes either way.

usage: freeze_proxy.py --listen 127.0.0.1:0 --upstream 127.0.0.1:5672 --ready-file PATH

Forwards bytes both ways until it gets SIGUSR1; from then on it reads
nothing and writes nothing on the connections it has, and keeps them open
(new connections are accepted and left silent too). --ready-file gets the
listening address. SIGTERM exits. Standard library only.
"""
import argparse
import signal
import socket
import sys
import threading
import time

frozen = threading.Event()


def pump(src, dst):
    try:
        while not frozen.is_set():
            src.settimeout(0.1)
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            if not data or frozen.is_set():
                break
            dst.sendall(data)
    except OSError:
        pass
    if not frozen.is_set():  # an ordinary close, before the freeze: pass it on
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    else:
        while True:  # silent: hold both sockets open, never read them
            time.sleep(3600)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--ready-file", required=True)
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    uhost, uport = a.upstream.rsplit(":", 1)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(64)
    signal.signal(signal.SIGUSR1, lambda *_: frozen.set())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(a.ready_file + ".tmp", "w") as fh:
        fh.write("%s:%d" % srv.getsockname())
    import os
    os.rename(a.ready_file + ".tmp", a.ready_file)
    while True:
        client, _ = srv.accept()
        if frozen.is_set():
            threading.Thread(target=pump, args=(client, client), daemon=True).start()
            continue
        up = socket.create_connection((uhost, int(uport)))
        for s, d in ((client, up), (up, client)):
            threading.Thread(target=pump, args=(s, d), daemon=True).start()


if __name__ == "__main__":
    main()
