#!/usr/bin/env python3
"""A local stand-in for the Hugging Face Hub, for the C++ Hub client's tests (stdlib only).

It serves the routes huggingface_hub uses, with the headers the real Hub sends:
  HEAD/GET /{repo}/resolve/{revision}/{path}   X-Repo-Commit, ETag / X-Linked-Etag, X-Linked-Size;
                                               LFS files answer 302 to a "CDN" on a second host name
                                               (http://localhost:<cdn port>), regular files are served
  GET /api/models/{repo}/revision/{revision}   {"id", "sha", "siblings"}
  GET /api/models/{repo}/tree/{revision}       recursive listing, paginated with a Link rel="next" header
  GET /cdn/{sha256}                            the LFS bytes; refuses requests that carry a token
  GET /_stats                                  every request seen so far, for the tests to inspect

The repos come from a JSON manifest (--manifest):
  {"repos": {"org/name": {"commit": "<40 hex>", "refs": {"main": "<40 hex>"}, "gated": false,
                          "redirect_to": "org/new-name",           # a renamed repo: relative 307
                          "files": {"path": {"text": "...", "repeat": 1, "lfs": false,
                                             "faults": ["corrupt", "cut_once:1000", "rate_limit_once",
                                                        "server_error_once", "ignore_range"]}}}},
   "accepted_token": "hf_good", "page_size": 100}

It prints "PORTS <main> <cdn>" on stdout once listening on 127.0.0.1, and exits when its parent
process is gone or after --lifetime seconds, so a crashed test never leaves it behind.
"""
import argparse
import hashlib
import json
import os
import socketserver
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer


class State:
    def __init__(self, manifest):
        self.manifest = manifest
        self.lock = threading.Lock()
        self.requests = []
        self.fired = set()  # faults that fire once: (fault, path) already used
        self.blobs = {}  # sha256 -> bytes, for the CDN
        self.cdn_port = 0
        for repo in manifest["repos"].values():
            for path, spec in repo.get("files", {}).items():
                data = spec["text"].encode() * spec.get("repeat", 1)
                spec["_data"] = data
                spec["_sha256"] = hashlib.sha256(data).hexdigest()
                spec["_sha1"] = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                if spec.get("lfs"):
                    self.blobs[spec["_sha256"]] = (data, spec)

    def fire_once(self, fault, key):
        with self.lock:
            if (fault, key) in self.fired:
                return False
            self.fired.add((fault, key))
            return True


def make_handler(state, role):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def record(self):
            with state.lock:
                state.requests.append({
                    "server": role, "method": self.command, "path": self.path,
                    "host": self.headers.get("Host", ""),
                    "authorization": self.headers.get("Authorization", ""),
                    "range": self.headers.get("Range", ""),
                    "user_agent": self.headers.get("User-Agent", ""),
                })

        def send(self, status, headers=None, body=b"", head=False, length=None):
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.send_header("Connection", "close")
            self.end_headers()
            if not head and body:
                self.wfile.write(body)
            self.close_connection = True

        def error(self, status, code, message, head, extra=None):
            headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
            headers.update(extra or {})
            self.send(status, headers, json.dumps({"error": message}).encode(), head)

        def do_HEAD(self):
            self.dispatch(head=True)

        def do_GET(self):
            self.dispatch(head=False)

        def dispatch(self, head):
            self.record()
            url = urllib.parse.urlsplit(self.path)
            parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
            if role == "cdn":
                return self.cdn(parts, head)
            if parts == ["_stats"]:
                with state.lock:
                    body = json.dumps({"requests": state.requests}).encode()
                return self.send(200, {"Content-Type": "application/json"}, body, head)
            if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models":
                return self.api(parts, url.query, head)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self.resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]), head)
            self.send(404, {}, b"no such route", head)

        def find_repo(self, repo_id, head, file_path=None):
            repo = state.manifest["repos"].get(repo_id)
            if repo is None:
                self.error(401, "RepoNotFound", "Repository not found", head)
                return None
            if repo.get("gated"):
                token = self.headers.get("Authorization", "")
                if not token:
                    self.error(401, "GatedRepo", "Access to model %s is restricted. You must have access to it and "
                               "be authenticated to access it. Please log in." % repo_id, head)
                    return None
                if token != "Bearer " + state.manifest.get("accepted_token", ""):
                    self.error(403, "GatedRepo", "Access to model %s is restricted and you are not in the authorized "
                               "list." % repo_id, head)
                    return None
            return repo

        def commit_of(self, repo, revision):
            if revision == repo["commit"]:
                return revision
            return repo.get("refs", {}).get(revision)

        def resolve(self, repo_id, revision, path, head):
            repo = state.manifest["repos"].get(repo_id)
            if repo is not None and "redirect_to" in repo:
                target = "/%s/resolve/%s/%s" % (repo["redirect_to"], urllib.parse.quote(revision, safe=""),
                                                urllib.parse.quote(path))
                return self.send(307, {"Location": target}, b"", head)
            repo = self.find_repo(repo_id, head)
            if repo is None:
                return
            commit = self.commit_of(repo, revision)
            if commit is None:
                return self.error(404, "RevisionNotFound", "Invalid rev id: %s" % revision, head)
            spec = repo["files"].get(path)
            if spec is None:
                return self.error(404, "EntryNotFound", "%s does not exist on %s" % (path, revision), head,
                                  {"X-Repo-Commit": commit})
            faults = spec.get("faults", [])
            if "rate_limit_once" in faults and state.fire_once("rate_limit", repo_id + path):
                return self.error(429, "RateLimited", "Too many requests", head, {"Retry-After": "1"})
            if "server_error_once" in faults and state.fire_once("server_error", repo_id + path):
                return self.error(503, "Unavailable", "Service temporarily unavailable", head)
            headers = {"X-Repo-Commit": commit}
            if spec.get("lfs"):
                headers.update({
                    "X-Linked-Etag": '"%s"' % spec["_sha256"], "X-Linked-Size": str(len(spec["_data"])),
                    "ETag": '"%s"' % spec["_sha1"],
                    "Location": "http://localhost:%d/cdn/%s" % (state.cdn_port, spec["_sha256"]),
                })
                return self.send(302, headers, b"", head)
            headers["ETag"] = '"%s"' % spec["_sha1"]
            self.serve_bytes(spec["_data"], spec, headers, head, repo_id + path)

        def serve_bytes(self, data, spec, headers, head, key):
            faults = spec.get("faults", [])
            if "corrupt" in faults:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            start = 0
            range_header = self.headers.get("Range", "")
            if range_header.startswith("bytes=") and "ignore_range" not in faults:
                start = int(range_header[6:].split("-")[0])
                if start >= len(data):
                    return self.send(416, {"Content-Range": "bytes */%d" % len(data)}, b"", head)
            status = 206 if start > 0 else 200
            if start > 0:
                headers["Content-Range"] = "bytes %d-%d/%d" % (start, len(data) - 1, len(data))
            body = data[start:]
            cut = next((f for f in faults if f.startswith("cut_once:")), None)
            if cut and not head and state.fire_once("cut", key):
                # Announce the whole body, send part of it, drop the connection.
                keep = int(cut.split(":")[1])
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:keep])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.send(status, headers, body, head)

        def cdn(self, parts, head):
            if self.headers.get("Authorization"):
                return self.send(400, {}, b"signed CDN URLs must not receive the Hub token", head)
            if len(parts) != 2 or parts[0] != "cdn" or parts[1] not in state.blobs:
                return self.send(404, {}, b"no such blob", head)
            data, spec = state.blobs[parts[1]]
            self.serve_bytes(data, spec, {}, head, "cdn" + parts[1])

        def api(self, parts, query, head):
            # /api/models/{org}/{name}/{revision|tree}/{revision}
            repo_id, kind, revision = parts[2] + "/" + parts[3], parts[4], "/".join(parts[5:])
            repo = self.find_repo(repo_id, head)
            if repo is None:
                return
            commit = self.commit_of(repo, revision)
            if commit is None:
                return self.error(404, "RevisionNotFound", "Invalid rev id: %s" % revision, head)
            if kind == "revision":
                body = {"id": repo_id, "sha": commit, "private": False, "gated": bool(repo.get("gated")),
                        "siblings": [{"rfilename": p} for p in sorted(repo["files"])]}
                return self.send(200, {"Content-Type": "application/json"}, json.dumps(body).encode(), head)
            entries = []
            listed = dict(repo["files"])
            for extra in repo.get("extra_listed_paths", []):
                listed[extra] = {"_data": b"", "_sha1": "0" * 40, "_sha256": "0" * 64}
            for path in sorted(listed):
                spec = listed[path]
                entry = {"type": "file", "path": path, "oid": spec["_sha1"], "size": len(spec["_data"])}
                if spec.get("lfs"):
                    entry["lfs"] = {"oid": spec["_sha256"], "size": len(spec["_data"]), "pointerSize": 134}
                entries.append(entry)
            page_size = state.manifest.get("page_size", 100)
            params = urllib.parse.parse_qs(query)
            offset = int(params.get("cursor", ["0"])[0])
            page = entries[offset:offset + page_size]
            headers = {"Content-Type": "application/json"}
            if offset + page_size < len(entries):
                next_url = "http://127.0.0.1:%d%s?recursive=true&expand=false&cursor=%d" % (
                    self.server.server_address[1], urllib.parse.urlsplit(self.path).path, offset + page_size)
                headers["Link"] = '<%s>; rel="next"' % next_url
            self.send(200, headers, json.dumps(page).encode(), head)

    return Handler


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lifetime", type=float, default=300)
    args = parser.parse_args()
    with open(args.manifest) as f:
        state = State(json.load(f))
    main_server = Server(("127.0.0.1", args.port), make_handler(state, "hub"))
    cdn_server = Server(("127.0.0.1", 0), make_handler(state, "cdn"))
    state.cdn_port = cdn_server.server_address[1]
    for server in (main_server, cdn_server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("PORTS %d %d" % (main_server.server_address[1], state.cdn_port), flush=True)
    parent = os.getppid()
    deadline = time.monotonic() + args.lifetime
    while os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.2)
    sys.exit(0)


if __name__ == "__main__":
    main()
