"""The upstream app behind ringshard's proxy in tests/proxy.rs.

    python3 tests/proxy_app.py (--port N | --unix PATH) --log FILE

A raw threaded HTTP/1.1 server (standard library only) so that the tests control every byte it
sends, broken responses included. It prints "READY <port>" (or "READY unix") once listening.
Connections are kept alive: requests are read one after another until the peer closes.

Each request read whole appends one JSON line to the log, flushed at once:
    {"event": "request", "conn": N, "id": X-Test-Id or null, "method", "path",
     "headers": [[name, value], ...], "body_len", "body_sha256", "trailers": [[name, value], ...],
     "in_flight": requests this process has read and not begun to answer, this one included}
`conn` numbers the connections (1, 2, ...), so a test can tell which requests shared one.
Each response written whole appends {"event": "sent", "conn": N, "id": ...}.

Endpoints, by path prefix (query parameters in brackets):
    /echo            200, the request's record as JSON, with Content-Length
    /big[?n=N]       N bytes, byte i = i % 251, with Content-Length
    /chunked         chunked "hello world" with the trailer field X-Checksum: abc
    /until-close[?n=N]  N bytes (as /big) delimited by closing the connection
    /sleep[?ms=N]    200 after N ms
    /grow[?mb=N]     keeps N more MiB allocated (memory recycling), 200
    /stall-body[?ms=N]  Content-Length 1000, 10 bytes, then silence for N ms (5000), close
    /malformed       a garbage status line and Content-Length, then close
    /truncated       Content-Length 100000, 10 bytes, close
    /drop            close without a byte of response
    /hop             hop-by-hop fields in the response, beside an end-to-end X-End: kept
    anything else    200 "ok"
"""

import argparse
import hashlib
import itertools
import json
import os
import socketserver
import sys
import threading
import time
from urllib.parse import parse_qs, urlsplit

LOG = None
LOG_LOCK = threading.Lock()
IN_FLIGHT = [0]  # requests read and not yet being answered, in this process
CONN_IDS = itertools.count(1)
CONN_LOCK = threading.Lock()
PATTERN = bytes(range(251))
HELD = []  # what /grow keeps


def log(record):
    with LOG_LOCK:
        LOG.write(json.dumps(record) + "\n")
        LOG.flush()


def pattern(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def read_fields(rfile):
    """Header (or trailer) lines up to the empty line, as (name, value) pairs."""
    fields = []
    while True:
        line = rfile.readline(65536)
        if not line:
            raise EOFError("EOF inside a head")
        line = line.rstrip(b"\r\n")
        if not line:
            return fields
        name, _, value = line.decode("latin-1").partition(":")
        fields.append((name.strip(), value.strip()))


def field(fields, name):
    return next((v for n, v in fields if n.lower() == name), None)


def read_request(rfile):
    """One request, or None when the peer closed between requests."""
    line = rfile.readline(65536)
    while line in (b"\r\n", b"\n"):
        line = rfile.readline(65536)
    if not line:
        return None
    method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers = read_fields(rfile)
    # Logged before the body is read: a proxy that streams a large body is seen to send the
    # head before the client has sent all of the body.
    log({"event": "head", "id": field(headers, "x-test-id")})
    body, trailers = b"", []
    te = field(headers, "transfer-encoding")
    if te is not None and te.lower() == "chunked":
        parts = []
        while True:
            size = int(rfile.readline(65536).split(b";")[0].strip(), 16)
            if size == 0:
                trailers = read_fields(rfile)
                break
            parts.append(rfile.read(size))
            if rfile.read(2) != b"\r\n":
                raise ValueError("no CRLF after chunk data")
        body = b"".join(parts)
    elif field(headers, "content-length") is not None:
        n = int(field(headers, "content-length"))
        body = rfile.read(n)
        if len(body) != n:
            raise EOFError("EOF inside a body")
    return method, target, headers, body, trailers


def head(status, fields):
    lines = ["HTTP/1.1 %s" % status] + ["%s: %s" % f for f in fields]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        with CONN_LOCK:
            self.conn = next(CONN_IDS)
        self.counted = False
        rfile = self.request.makefile("rb")
        try:
            while True:
                req = read_request(rfile)
                if req is None:
                    return
                answered = self.answer(*req)
                self.uncount()  # an endpoint that closes without a byte
                if not answered:
                    return
        except (OSError, EOFError, ValueError):
            return
        finally:
            self.uncount()
            rfile.close()

    def uncount(self):
        if self.counted:
            with LOG_LOCK:
                IN_FLIGHT[0] -= 1
            self.counted = False

    def send(self, data):
        # Counted out before the first byte goes: once the front can see an answer, this
        # process no longer counts the request.
        self.uncount()
        self.request.sendall(data)

    def answer(self, method, target, headers, body, trailers):
        """Answers one request; False when the connection is to be closed."""
        url = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        test_id = field(headers, "x-test-id")
        with LOG_LOCK:
            IN_FLIGHT[0] += 1
            in_flight = IN_FLIGHT[0]
        self.counted = True
        record = {
            "event": "request",
            "conn": self.conn,
            "id": test_id,
            "method": method,
            "path": target,
            "headers": headers,
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "trailers": trailers,
            "in_flight": in_flight,
        }
        log(record)
        is_head = method == "HEAD"

        def respond(status, fields, payload):
            fields = fields + [("Content-Length", str(len(payload)))]
            self.send(head(status, fields) + (b"" if is_head else payload))
            log({"event": "sent", "conn": self.conn, "id": test_id})
            return True

        if path.startswith("/echo"):
            return respond("200 OK", [("Content-Type", "application/json")],
                           json.dumps(record).encode())
        if path.startswith("/big"):
            return respond("200 OK", [("Content-Type", "application/octet-stream")],
                           pattern(int(query.get("n", "1000"))))
        if path.startswith("/chunked"):
            self.send(head("200 OK", [("Transfer-Encoding", "chunked"),
                                      ("Trailer", "X-Checksum")]))
            if not is_head:
                self.send(b"6\r\nhello \r\n5\r\nworld\r\n0\r\nX-Checksum: abc\r\n\r\n")
            log({"event": "sent", "conn": self.conn, "id": test_id})
            return True
        if path.startswith("/until-close"):
            self.send(head("200 OK", [("Connection", "close")])
                      + pattern(int(query.get("n", "1000"))))
            log({"event": "sent", "conn": self.conn, "id": test_id})
            return False
        if path.startswith("/grow"):
            HELD.append(bytearray(int(query.get("mb", "1")) << 20))
            return respond("200 OK", [], b"grown")
        if path.startswith("/sleep"):
            time.sleep(int(query.get("ms", "1000")) / 1000)
            return respond("200 OK", [], b"slept")
        if path.startswith("/stall-body"):
            self.send(head("200 OK", [("Content-Length", "1000")]) + b"0123456789")
            time.sleep(int(query.get("ms", "5000")) / 1000)
            return False
        if path.startswith("/malformed"):
            self.send(b"HTTP/1.1 2xx Broken\r\nContent-Length: x\r\n\r\nBroken body")
            return False
        if path.startswith("/truncated"):
            self.send(head("200 OK", [("Content-Length", "100000")]) + b"0123456789")
            return False
        if path.startswith("/drop"):
            return False
        if path.startswith("/hop"):
            return respond("200 OK", [
                ("Connection", "X-Up-Hop"),
                ("X-Up-Hop", "1"),
                ("Keep-Alive", "timeout=5, max=100"),
                ("Proxy-Authenticate", "Basic realm=\"up\""),
                ("Upgrade", "h2c"),
                ("X-End", "kept"),
            ], b"hop")
        return respond("200 OK", [("Content-Type", "text/plain")], b"ok")


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class UnixServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    global LOG
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", type=int)
    where.add_argument("--unix")
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    LOG = open(args.log, "a", encoding="utf-8")
    if args.unix:
        if os.path.exists(args.unix):
            os.unlink(args.unix)
        server = UnixServer(args.unix, Handler)
        print("READY unix", flush=True)
    else:
        server = TCPServer(("127.0.0.1", args.port), Handler)
        print("READY %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
