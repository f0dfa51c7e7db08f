#!/usr/bin/python3
"""http_fixture.py - a small HTTP server answering from a script, for the system tests.

usage: http_fixture.py --port-file PATH --script FILE --log FILE
The script is JSON: {"GET /rest/V1/orders/1": [{"status": 503}, {"status": 200, "body": {...}}]}
Each request to METHOD PATH takes the next answer of its list (the last one
repeats); an answer may hold "status", "body" (JSON, or "raw" text),
"headers" and "delay_s". Unknown paths get 404. Each request is appended to
--log as one JSON line: at (epoch seconds), method, path, headers, body.
Listens on 127.0.0.1, a free port written to --port-file. Standard library only.
"""
import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--script", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    with open(args.script) as f:
        script = json.load(f)
    served = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            key = f"{self.command} {self.path}"
            with lock:
                with open(args.log, "a") as log:
                    log.write(json.dumps({"at": time.time(), "method": self.command,
                                          "path": self.path, "headers": dict(self.headers),
                                          "body": body}) + "\n")
                answers = script.get(key)
                n = served.get(key, 0)
                served[key] = n + 1
            if not answers:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            a = answers[min(n, len(answers) - 1)]
            time.sleep(a.get("delay_s", 0))
            if "raw" in a:
                data = a["raw"].encode()
            else:
                data = json.dumps(a.get("body", {})).encode()
            self.send_response(a.get("status", 200))
            for k, v in a.get("headers", {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = answer
        do_POST = answer

        def log_message(self, *_):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(args.port_file + ".tmp", "w") as out:
        out.write(str(srv.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
