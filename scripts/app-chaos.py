"""Load for scripts/app-chaos.sh: keep-alive clients sending GET and POST requests, each with a
unique X-Test-Id, for a while; then what came back, and what the app's log says it executed.

    python3 scripts/app-chaos.py --port P --clients 16 --seconds 20 --log APP_LOG

Prints one JSON object: requests sent, answered 2xx, answered 5xx (by status), connection
errors, and from the app's log the ids executed more than once (GET and POST apart).
"""

import argparse
import collections
import http.client
import json
import threading
import time


def client(port, until, n, results):
    conn = None
    i = 0
    while time.time() < until:
        i += 1
        method = "POST" if i % 2 else "GET"
        rid = "c%d-%d" % (n, i)
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            body = b"x" * 64 if method == "POST" else None
            conn.request(method, "/echo", body=body, headers={"X-Test-Id": rid})
            r = conn.getresponse()
            r.read()
            results.append((method, rid, r.status))
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            results.append((method, rid, "error"))
            if conn is not None:
                conn.close()
            conn = None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--log", required=True)
    a = p.parse_args()
    until = time.time() + a.seconds
    results = []
    threads = [threading.Thread(target=client, args=(a.port, until, n, results)) for n in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = collections.Counter(str(s) for _, _, s in results)
    executed = collections.Counter()
    method_of = {}
    with open(a.log, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "request" and rec.get("id"):
                executed[rec["id"]] += 1
                method_of[rec["id"]] = rec.get("method")
    twice = [i for i, c in executed.items() if c > 1]
    failed = sum(c for s, c in statuses.items() if s == "error" or s.startswith("5"))
    print(json.dumps({
        "sent": len(results),
        "statuses": dict(statuses),
        "failed": failed,
        "failed_percent": round(100.0 * failed / max(1, len(results)), 3),
        "posts_executed_twice": sum(1 for i in twice if method_of.get(i) == "POST"),
        "gets_executed_twice": sum(1 for i in twice if method_of.get(i) == "GET"),
    }))


if __name__ == "__main__":
    main()
