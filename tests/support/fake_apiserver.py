"""A stand-in for the Kubernetes API server, for tests/tests/operator.rs.

It speaks just enough of the API for `persona operator` to run as a real process:
the Lease of leader election (get, create, update with resourceVersion checks), lists
of any other resource (empty), watches that stay open with nothing to say, and Events.
No Kubernetes API server can run on the test machines; this is the one seam the tests
may fake. Every request is logged; the test reads the log and moves the Lease through
two control endpoints:

    GET  /_log                the requests so far, as JSON
    PUT  /_lease              replace the Lease's spec (a JSON LeaseSpec), as another
                              replica or an administrator would

    python3 fake_apiserver.py PORT_FILE    # binds 127.0.0.1:0, writes the port there
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.Lock()
STATE = {"lease": None, "version": 1, "log": []}


def now_micro():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def status(self, code, reason):
        self.reply(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": reason, "reason": reason, "code": code})

    def record(self, method, body=None):
        url = urlparse(self.path)
        with LOCK:
            STATE["log"].append({"method": method, "path": url.path, "query": url.query, "body": body})
        return url, parse_qs(url.query)

    def lease_object(self):
        lease = STATE["lease"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": lease["name"], "namespace": lease["namespace"],
                             "resourceVersion": str(STATE["version"])},
                "spec": lease["spec"]}

    def do_GET(self):
        if self.path == "/_log":
            with LOCK:
                return self.reply(200, STATE["log"])
        url, query = self.record("GET")
        if "/leases/" in url.path:
            with LOCK:
                if STATE["lease"] is None:
                    return self.status(404, "NotFound")
                return self.reply(200, self.lease_object())
        if query.get("watch", [""])[0] in ("true", "1"):
            # A watch with nothing to report: headers, then silence until closed.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            try:
                while True:
                    time.sleep(1)
            except Exception:
                return
        return self.reply(200, {"apiVersion": "v1", "kind": "List",
                                "metadata": {"resourceVersion": "1"}, "items": []})

    def do_POST(self):
        body = self.body()
        url, _ = self.record("POST", body)
        if url.path.endswith("/leases"):
            with LOCK:
                if STATE["lease"] is not None:
                    return self.status(409, "AlreadyExists")
                parts = url.path.split("/")
                STATE["lease"] = {"name": body["metadata"]["name"], "namespace": parts[parts.index("namespaces") + 1],
                                  "spec": body.get("spec", {})}
                STATE["version"] += 1
                return self.reply(201, self.lease_object())
        return self.reply(201, body or {})

    def do_PUT(self):
        body = self.body()
        if self.path == "/_lease":
            with LOCK:
                STATE["lease"]["spec"] = body
                STATE["version"] += 1
                return self.reply(200, self.lease_object())
        url, _ = self.record("PUT", body)
        if "/leases/" in url.path:
            with LOCK:
                if STATE["lease"] is None:
                    return self.status(404, "NotFound")
                if body["metadata"].get("resourceVersion") != str(STATE["version"]):
                    return self.status(409, "Conflict")
                STATE["lease"]["spec"] = body.get("spec", {})
                STATE["version"] += 1
                return self.reply(200, self.lease_object())
        return self.status(404, "NotFound")

    def do_PATCH(self):
        body = self.body()
        self.record("PATCH", body)
        return self.reply(200, body or {})


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
