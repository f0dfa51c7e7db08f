#!/usr/bin/python3
"""amqp_cut_proxy.py - a TCP proxy that cuts an AMQP connection before a publisher confirm.

usage: amqp_cut_proxy.py --listen 127.0.0.1:PORT --upstream 127.0.0.1:5672
                         --cut-after-publish-to EXCHANGE [--cut-delay-ms 300]
                         [--times 1] [--ready-file PATH] [--log PATH]

For the system tests: it proves a consumer neither loses nor doubles a message
when its broker connection dies after it published a message but before it
saw the broker's publisher confirm.

Every client connection gets its own upstream connection, and bytes are
forwarded unchanged both ways. The client->server stream is parsed as AMQP
0-9-1 frames. When the client publishes to EXCHANGE (and cuts remain; --times,
default 1), the proxy forwards that basic.publish with its content header and
body, then at once stops forwarding anything in either direction on that
connection (the broker still routes and confirms the message, but the client
never sees the confirm), waits --cut-delay-ms and closes both sockets abruptly
(the client gets a RST). It logs "cut connection N after publish to EXCHANGE
routing-key RK" to --log (appended) or stderr. Once the cuts are used up it
only forwards.

--ready-file is written (with the listening address) once the proxy accepts
connections; --listen with port 0 picks a free port. SIGTERM exits cleanly.
Standard library only: run it with Debian's /usr/bin/python3.
"""
import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_END = 1, 2, 3, 0xCE
BASIC_PUBLISH = (60, 40)
MAX_FRAME = 64 << 20  # larger sizes mean we lost sync: stop parsing, keep forwarding


def host_port(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--listen", type=host_port, required=True)
ap.add_argument("--upstream", type=host_port, required=True)
ap.add_argument("--cut-after-publish-to", required=True, metavar="EXCHANGE")
ap.add_argument("--cut-delay-ms", type=int, default=300)
ap.add_argument("--times", type=int, default=1)
ap.add_argument("--ready-file")
ap.add_argument("--log")
args = ap.parse_args()

EXCHANGE = args.cut_after_publish_to.encode()
cuts_left = args.times
lock = threading.Lock()


def log(line):
    with lock:
        out = open(args.log, "a") if args.log else sys.stderr
        try:
            out.write(line + "\n")
            out.flush()
        finally:
            if out is not sys.stderr:
                out.close()


def take_cut():
    global cuts_left
    with lock:
        if cuts_left <= 0:
            return False
        cuts_left -= 1
        return True


def shortstr(buf, pos):
    n = buf[pos]
    return bytes(buf[pos + 1:pos + 1 + n]), pos + 1 + n


class Parser:
    """Follows the client->server stream; feed() returns the offset in the
    chunk just past the last frame of a watched publish, or None."""

    def __init__(self):
        self.buf = bytearray()
        self.header_done = False
        self.active = True
        self.pending = None  # [channel, routing key, body bytes left or None before the header]
        self.routing_key = None

    def feed(self, chunk):
        if not self.active:
            return None
        base = len(self.buf)  # bytes in buf that came before this chunk
        self.buf += chunk
        pos = 0
        if not self.header_done:
            if len(self.buf) < 8:
                return None
            if self.buf[:8] != PROTOCOL_HEADER:
                self.active = False
                return None
            self.header_done, pos = True, 8
        cut_at = None
        while cut_at is None and len(self.buf) - pos >= 7:
            ftype, channel, size = struct.unpack_from(">BHI", self.buf, pos)
            if size > MAX_FRAME:
                self.active = False
                break
            end = pos + 7 + size + 1
            if len(self.buf) < end:
                break
            payload = self.buf[pos + 7:end - 1]
            if self.frame(ftype, channel, payload):
                cut_at = end - base
            pos = end
        del self.buf[:pos]
        return cut_at

    def frame(self, ftype, channel, payload):
        """Returns True when this frame completes a publish to cut after."""
        p = self.pending
        if p is not None and channel == p[0]:
            if ftype == FRAME_HEADER:
                p[2] = struct.unpack_from(">Q", payload, 4)[0]
            elif ftype == FRAME_BODY and p[2] is not None:
                p[2] -= len(payload)
            else:  # the content ended early (a protocol error): forget it
                self.pending = None
                return False
            if p[2] is not None and p[2] <= 0:
                self.pending = None
                self.routing_key = p[1]
                return True
            return False
        if ftype == FRAME_METHOD and struct.unpack_from(">HH", payload) == BASIC_PUBLISH:
            exchange, pos = shortstr(payload, 6)
            routing_key, _ = shortstr(payload, pos)
            if exchange == EXCHANGE and take_cut():
                self.pending = [channel, routing_key, None]
        return False


class Connection:
    def __init__(self, number, client, upstream):
        self.number, self.client, self.upstream = number, client, upstream
        self.dropping = threading.Event()  # set: forward nothing any more
        self.open_directions = 2
        self.lock = threading.Lock()

    def start(self):
        threading.Thread(target=self.client_to_server, daemon=True).start()
        threading.Thread(target=self.server_to_client, daemon=True).start()

    def client_to_server(self):
        parser = Parser()
        try:
            while True:
                data = self.client.recv(65536)
                if not data:
                    break
                if self.dropping.is_set():
                    continue
                cut_at = parser.feed(data)
                if cut_at is None:
                    self.upstream.sendall(data)
                    continue
                # Stop server->client before the broker can have the whole
                # message, so its confirm can never reach the client.
                self.dropping.set()
                self.upstream.sendall(data[:cut_at])
                self.cut(parser.routing_key)
                return
        except OSError:
            self.close()
            return
        self.done(self.upstream)

    def server_to_client(self):
        try:
            while True:
                data = self.upstream.recv(65536)
                if not data:
                    break
                if not self.dropping.is_set():
                    self.client.sendall(data)
        except OSError:
            self.close()
            return
        self.done(self.client)

    def done(self, peer):
        """One side closed its sending half: pass the half-close on."""
        try:
            peer.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self.lock:
            self.open_directions -= 1
            last = self.open_directions == 0
        if last:
            self.close(abrupt=False)

    def cut(self, routing_key):
        log("cut connection %d after publish to %s routing-key %s" % (
            self.number, EXCHANGE.decode(errors="replace"), routing_key.decode(errors="replace")))
        time.sleep(args.cut_delay_ms / 1000)
        self.close()

    def close(self, abrupt=True):
        """Closes both sockets; abruptly (a RST) unless both sides hung up."""
        self.dropping.set()
        for sock in (self.client, self.upstream):
            try:
                if abrupt:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RD)  # wakes the other thread's recv()
            except OSError:
                pass
            sock.close()


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.create_server(args.listen)
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%s:%d\n" % listener.getsockname()[:2])
        os.replace(tmp, args.ready_file)
    number = 0
    try:
        while True:
            client, _ = listener.accept()
            number += 1
            try:
                upstream = socket.create_connection(args.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError as e:
                log("connection %d: upstream %s:%d: %s" % (number, *args.upstream, e))
                client.close()
                continue
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            Connection(number, client, upstream).start()
    finally:
        listener.close()


if __name__ == "__main__":
    main()
