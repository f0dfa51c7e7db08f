#!/usr/bin/python3
"""slowloris.py - many slow HTTP clients, for http_slowloris.sh.

usage: slowloris.py PORT COUNT SECONDS --from 127.0.0.2 [--from 127.0.0.3 ...]
       [--every 6] [--stats FILE]
Opens COUNT connections to 127.0.0.1:PORT, spread over the --from source
addresses, each sending a request line and then one header line every
--every seconds, never finishing the request. Stops after SECONDS and writes
to --stats, as JSON: opened (connects that succeeded), refused (connects
that failed), closed_by_server (connections the server closed or reset).
Non-blocking, standard library only.
"""
import argparse
import errno
import json
import selectors
import socket
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("seconds", type=float)
    ap.add_argument("--from", dest="sources", action="append", required=True)
    ap.add_argument("--every", type=float, default=6.0)
    ap.add_argument("--stats")
    a = ap.parse_args()

    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "refused": 0, "closed_by_server": 0}
    conns = {}  # socket -> "connecting" or "open"
    for i in range(a.count):
        s = socket.socket()
        s.setblocking(False)
        s.bind((a.sources[i % len(a.sources)], 0))
        rc = s.connect_ex(("127.0.0.1", a.port))
        if rc not in (0, errno.EINPROGRESS):
            stats["refused"] += 1
            s.close()
            continue
        conns[s] = "connecting"
        sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ)

    end = time.monotonic() + a.seconds
    next_line = time.monotonic()
    while time.monotonic() < end:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            if conns[s] == "connecting":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    stats["refused"] += 1
                    drop(sel, conns, s)
                    continue
                conns[s] = "open"
                stats["opened"] += 1
                sel.modify(s, selectors.EVENT_READ)
                try:
                    s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                except OSError:
                    pass
                continue
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:  # closed or reset by the server
                stats["closed_by_server"] += 1
                drop(sel, conns, s)
        if time.monotonic() >= next_line:
            next_line += a.every
            for s, state in list(conns.items()):
                if state == "open":
                    try:
                        s.send(b"X-Slow: 1\r\n")
                    except OSError:
                        stats["closed_by_server"] += 1
                        drop(sel, conns, s)
    for s in list(conns):
        drop(sel, conns, s)
    if a.stats:
        with open(a.stats, "w") as f:
            json.dump(stats, f)
    print(json.dumps(stats))


def drop(sel, conns, s):
    sel.unregister(s)
    del conns[s]
    s.close()


if __name__ == "__main__":
    main()
