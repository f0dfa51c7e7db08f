#!/usr/bin/python3
"""slow_link.py - a TCP proxy that delays what the client sends, and resets.

usage: slow_link.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:5672
                    [--delay-ms 200] [--ready-file PATH] [--report PATH]
                    [--swallow-close]

For the system tests: it stands for a broker that has not yet read what a
client sent when the client resets the connection. Bytes from the client
reach the upstream --delay-ms after they came; bytes from the upstream are
passed on at once. When the client resets its side (close() with unread
data sends a RST), the upstream connection is reset at once too and what
the client sent in its last --delay-ms is dropped, as a broker's kernel
drops unread input on a RST. A clean close (FIN) is passed on after the
bytes before it. --ready-file gets the listening address once it accepts.
--report gets "open" for each client connection accepted, and a line for
each that ends: its orderq connection name's purpose ("consume: ", "?: "
for another client), then "fin after close-ok" when the client closed its
side after the broker's last frame, connection.close-ok (heartbeats
aside), "fin before close-ok" when it did so earlier (RabbitMQ then ends
the connection at once, its channels with it, whatever they had not yet
handled), "reset" for a RST.
--swallow-close: a broker that never answers a close. The client's
connection.close frame and everything it sends after it but heartbeats are
dropped, so no close-ok comes back (heartbeats still pass, so the broker
keeps the connection open); the report says "close swallowed" when it
happens, then "heartbeat after close" for each heartbeat passed on.
Standard library only: run it with Debian's /usr/bin/python3.
"""
import argparse
import collections
import re
import socket
import struct
import threading
import time

CLOSE_OK = bytes([1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 51, 0xCE])
# connection.close from the client: a method frame on channel 0, class 10, method 50
CONNECTION_CLOSE = re.compile(rb"\x01\x00\x00[\x00-\xff]{4}\x00\x0a\x00\x32", re.S)
HEARTBEAT = bytes([8, 0, 0, 0, 0, 0, 0, 0xCE])


def ends_with_close_ok(tail):
    while len(tail) >= len(CLOSE_OK) + len(HEARTBEAT) and tail.endswith(HEARTBEAT):
        tail = tail[: -len(HEARTBEAT)]
    return tail.endswith(CLOSE_OK)


def reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


class Link:
    def __init__(self, client, upstream_addr, delay, report, swallow_close=False):
        self.client = client
        self.report = report
        self.swallow_close = swallow_close
        self.swallowing = False
        self.up_tail = b""  # the last bytes the upstream sent
        self.head = b""  # the first bytes the client sent: its connection name
        self.up = socket.create_connection(upstream_addr)
        self.delay = delay
        self.pending = collections.deque()  # (due, bytes or None for FIN)
        self.cv = threading.Condition()
        self.dead = False

    def client_to_pending(self):
        while True:
            try:
                data = self.client.recv(65536)
            except OSError:  # ECONNRESET: the client reset the connection
                self.note("reset")
                with self.cv:
                    self.dead = True
                    self.pending.clear()
                    self.cv.notify()
                reset(self.up)
                return
            if len(self.head) < 4096:
                self.head += data
            close = CONNECTION_CLOSE.search(data) if self.swallow_close and not self.swallowing else None
            if close:
                self.swallowing = True
                self.note("close swallowed")
                data, after = data[: close.start()], data[close.start() :]
                data += self.heartbeats_in(after)
                if not data:
                    continue
            elif self.swallowing and data:
                data = self.heartbeats_in(data)
                if not data:
                    continue
            if not data:
                self.note("fin after close-ok" if ends_with_close_ok(self.up_tail) else "fin before close-ok")
            with self.cv:
                self.pending.append((time.monotonic() + self.delay, data or None))
                self.cv.notify()
            if not data:
                return

    def heartbeats_in(self, swallowed):
        """The heartbeat frames among bytes swallowed after a close, each noted."""
        beats = swallowed.count(HEARTBEAT)
        for _ in range(beats):
            self.note("heartbeat after close")
        return HEARTBEAT * beats

    def note(self, event):
        if self.report:
            name = re.search(rb"orderq ([a-z-]+) ", self.head)
            with open(self.report, "a") as f:
                f.write("%s: %s\n" % (name.group(1).decode() if name else "?", event))

    def pending_to_upstream(self):
        while True:
            with self.cv:
                while not self.pending and not self.dead:
                    self.cv.wait()
                if self.dead:
                    return
                due, data = self.pending[0]
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            with self.cv:
                if self.dead or not self.pending:
                    return
                self.pending.popleft()
            try:
                if data is None:
                    self.up.shutdown(socket.SHUT_WR)
                    return
                self.up.sendall(data)
            except OSError:
                return

    def upstream_to_client(self):
        try:
            while True:
                data = self.up.recv(65536)
                if not data:
                    break
                self.up_tail = (self.up_tail + data)[-64:]
                self.client.sendall(data)
        except OSError:
            pass
        try:
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def run(self):
        for f in (self.client_to_pending, self.pending_to_upstream, self.upstream_to_client):
            threading.Thread(target=f, daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--delay-ms", type=int, default=200)
    ap.add_argument("--ready-file")
    ap.add_argument("--report")
    ap.add_argument("--swallow-close", action="store_true")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    uhost, uport = a.upstream.rsplit(":", 1)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, int(port)))
    srv.listen(16)
    if a.ready_file:
        with open(a.ready_file, "w") as f:
            f.write("%s:%d\n" % srv.getsockname())
    while True:
        client, _ = srv.accept()
        if a.report:
            with open(a.report, "a") as f:
                f.write("open\n")
        try:
            Link(client, (uhost, int(uport)), a.delay_ms / 1000.0, a.report, a.swallow_close).run()
        except OSError:
            reset(client)


if __name__ == "__main__":
    main()
