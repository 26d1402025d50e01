"""A synthetic journal of realistic size, for the indexer's tests and bench/bench_ui.py.

Lines look like the proxy's (the same fields, headers and sizes; prev/mac are
random hex, so `agentlog verify` would refuse it: the UI does not verify).
Some exchanges carry JSON bodies, stored under bodies/ like the proxy's.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path

from agentlog.ids import new_id
from agentlog.logsdir import LogsDir
from agentlog.timefmt import rfc3339

DOMAINS = [
    "api.anthropic.com",
    "api.github.com",
    "registry.npmjs.org",
    "pypi.org",
    "files.pythonhosted.org",
    "objects.githubusercontent.com",
    "statsig.anthropic.com",
    "sentry.io",
]
_WORDS = [
    "alpha",
    "bravo",
    "charlie",
    "delta",
    "echo",
    "foxtrot",
    "golf",
    "hotel",
    "india",
    "juliet",
    "kilo",
    "lima",
]


class JournalMaker:
    """Writes `exchanges` request+response pairs (a few blocked or failed) to DIR."""

    def __init__(self, root: Path, *, seed: int = 1, body_every: int = 5, bodies: int = 500):
        self.logs = LogsDir(root)
        self.rng = random.Random(seed)
        self.body_every = body_every
        self.seq = 0
        self.t = 1_800_000_000.0
        self.session = new_id(self.t)
        self.logs.bodies.mkdir(parents=True, exist_ok=True)
        self.refs = [self._store(self._body(i)) for i in range(bodies)]

    def _body(self, i: int) -> bytes:
        words = " ".join(self.rng.choice(_WORDS) for _ in range(300))
        doc = {"model": "claude", "i": i, "messages": [{"role": "user", "content": words}]}
        return json.dumps(doc).encode()

    def _store(self, body: bytes) -> str:
        digest = hashlib.sha256(body).hexdigest()
        ref = LogsDir.body_ref(digest)
        path = self.logs.root / ref
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(body)
        return ref

    def _line(self, event: dict) -> bytes:
        self.seq += 1
        event["seq"] = self.seq
        event["prev"] = f"{self.rng.getrandbits(256):064x}"
        event["mac"] = f"{self.rng.getrandbits(256):064x}"
        return json.dumps(event, separators=(",", ":")).encode() + b"\n"

    def _base(self, kind: str, id: str) -> dict:
        self.t += 0.001
        return {
            "v": 1,
            "event": kind,
            "id": id,
            "seq": None,
            "session": self.session,
            "timestamp": rfc3339(self.t),
        }

    def exchange(self, n: int) -> Iterator[bytes]:
        rng = self.rng
        id = new_id(self.t)
        domain = DOMAINS[n % len(DOMAINS)]
        body = self.refs[n % len(self.refs)] if n % self.body_every == 0 else None
        request = {
            **self._base("request", id),
            "method": "POST" if body else "GET",
            "scheme": "https",
            "domain": domain,
            "port": 443,
            "path": f"/v1/{rng.choice(_WORDS)}/{n}?page={n % 7}",
            "http_version": "HTTP/2.0",
            "headers": {
                "user-agent": "claude-cli/1.0.0 (external, cli)",
                "accept": "application/json",
                "content-type": "application/json",
                "x-api-key": "[REDACTED]",
                "anthropic-version": "2023-06-01",
                "x-stainless-lang": "js",
                "x-request-n": str(n),
                "accept-encoding": "gzip, deflate, br",
            },
            "client": f"127.0.0.1:{40000 + n % 20000}",
            "agent_dst": None,
            "mode": "regular",
            "decision": "allowed",
            "request_bytes": 15000 if body else 0,
            "request_body": body,
            "request_body_truncated": False,
            "pcap_file": None,
        }
        yield self._line(request)
        if n % 97 == 13:
            yield self._line(
                {
                    **self._base("error", id),
                    "error": "connection reset",
                    "stage": "response",
                    "response_bytes": None,
                    "upstream_src": None,
                    "upstream_dst": None,
                }
            )
            return
        status = 200 if n % 31 else 404
        yield self._line(
            {
                **self._base("response", id),
                "status": status,
                "reason": "OK" if status == 200 else "Not Found",
                "http_version": "HTTP/2.0",
                "headers": {
                    "content-type": "application/json",
                    "date": "Thu, 01 Jan 2026 00:00:00 GMT",
                    "server": "cloudflare",
                    "cf-ray": f"{rng.getrandbits(64):016x}-SJC",
                    "request-id": f"req_{n:020d}",
                    "content-length": "4096",
                },
                "response_bytes": 4096,
                "response_body": self.refs[(n + 1) % len(self.refs)] if body else None,
                "response_body_truncated": False,
                "ttfb_ms": round(rng.uniform(5, 300), 3),
                "duration_ms": round(rng.uniform(300, 900), 3),
                "upstream_src": "127.0.0.1:50000",
                "upstream_dst": "127.0.0.1:443",
            }
        )

    def model_call(self, request_body: bytes, response_body: bytes, content_type: str) -> str:
        """Append one POST /v1/messages exchange with these bodies; its id."""
        id = new_id(self.t)
        request = {
            **self._base("request", id),
            "method": "POST",
            "scheme": "https",
            "domain": "api.anthropic.com",
            "port": 443,
            "path": "/v1/messages?beta=true",
            "http_version": "HTTP/2.0",
            "headers": {"content-type": "application/json", "x-api-key": "[REDACTED]"},
            "client": "127.0.0.1:40000",
            "agent_dst": None,
            "mode": "regular",
            "decision": "allowed",
            "request_bytes": len(request_body),
            "request_body": self._store(request_body),
            "request_body_truncated": False,
            "pcap_file": None,
        }
        response = {
            **self._base("response", id),
            "status": 200,
            "reason": "OK",
            "http_version": "HTTP/2.0",
            "headers": {"content-type": content_type},
            "response_bytes": len(response_body),
            "response_body": self._store(response_body),
            "response_body_truncated": False,
            "ttfb_ms": 100.0,
            "duration_ms": 900.0,
            "upstream_src": "127.0.0.1:50000",
            "upstream_dst": "127.0.0.1:443",
        }
        with open(self.logs.journal, "ab") as f:
            f.write(self._line(request) + self._line(response))
        return id

    def lines(self, exchanges: int) -> Iterator[bytes]:
        yield self._line(
            {
                **self._base("journal", new_id(self.t)),
                "action": "start",
                "listening": "127.0.0.1:8080",
            }
        )
        for n in range(exchanges):
            yield from self.exchange(n)

    def write(self, exchanges: int) -> Path:
        with open(self.logs.journal, "ab") as f:
            chunk: list[bytes] = []
            for line in self.lines(exchanges):
                chunk.append(line)
                if len(chunk) >= 10_000:
                    f.write(b"".join(chunk))
                    chunk = []
            f.write(b"".join(chunk))
        return self.logs.journal
