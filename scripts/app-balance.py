"""A single-threaded app for scripts/app-balance.sh: one event loop, one request at a time across
all its keep-alive connections, as a Node process or a one-thread Puma is. GET /fast answers at
once; GET /slow holds the whole process for SLOW_MS milliseconds (time.sleep), as a slow query
does. A request sent to a busy process waits in its socket, unseen by the front.

    python3 scripts/app-balance.py --unix PATH --slow-ms 50
"""

import argparse
import os
import selectors
import socket
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--unix", required=True)
    p.add_argument("--slow-ms", type=int, default=50)
    a = p.parse_args()
    if os.path.exists(a.unix):
        os.unlink(a.unix)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(a.unix)
    srv.listen(128)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    bufs = {}
    while True:
        ready = []
        for key, _ in sel.select():
            s = key.fileobj
            if s is srv:
                try:
                    c, _ = srv.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ)
                bufs[c] = b""
                continue
            try:
                data = s.recv(65536)
            except (BlockingIOError, ConnectionError):
                data = b""
            if not data:
                sel.unregister(s)
                bufs.pop(s, None)
                s.close()
                continue
            bufs[s] += data
            ready.append(s)
        # Every whole request read, answered one at a time.
        queue = []
        for s in ready:
            while b"\r\n\r\n" in bufs.get(s, b""):
                head, bufs[s] = bufs[s].split(b"\r\n\r\n", 1)
                queue.append((s, head.split(b" ", 2)[1]))
        for s, path in queue:
            if path.startswith(b"/slow"):
                time.sleep(a.slow_ms / 1000.0)
            try:
                s.sendall(OK)
            except OSError:
                pass


if __name__ == "__main__":
    main()
