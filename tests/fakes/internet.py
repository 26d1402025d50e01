"""The Docker tests' `internet` service: the outside world the agent would talk to. Stdlib only.

    python3 internet.py --state DIR

DIR holds the certificates the test made (anthropic.pem/.key for
api.anthropic.com, site.pem/.key for site.test) and receives the logs:

* 443/tcp: the fake Anthropic API (anthropic.py), requests in anthropic.jsonl;
* 8443/tcp: an HTTPS site answering every GET with ``hello from site.test``;
* 5353/udp: a listener that answers nothing.

Every TCP connection and every datagram is also written to peers.jsonl with
the address it came from, so a test can tell that only the proxy ever got here.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import anthropic  # noqa: E402 - beside this file, run as a script

_lock = threading.Lock()


def note(state: Path, **entry: Any) -> None:
    with _lock, open(state / "peers.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def serve_anthropic(state: Path) -> anthropic.FakeAnthropic:
    original = anthropic._Server.finish_request

    def finish_request(server: Any, request: Any, client_address: Any) -> None:
        note(state, service="anthropic", peer=client_address[0])
        original(server, request, client_address)

    anthropic._Server.finish_request = finish_request  # type: ignore[method-assign]
    fake = anthropic.FakeAnthropic(
        str(state / "anthropic.pem"),
        str(state / "anthropic.key"),
        host="0.0.0.0",
        port=443,
        log_file=str(state / "anthropic.jsonl"),
    )
    return fake.start()


class _Site(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: Path

    def do_GET(self) -> None:
        note(self.state, service="site", peer=self.client_address[0], path=self.path)
        body = b"hello from site.test\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def serve_site(state: Path) -> ThreadingHTTPServer:
    _Site.state = state
    server = ThreadingHTTPServer(("0.0.0.0", 8443), _Site)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(state / "site.pem"), str(state / "site.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def serve_udp(state: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 5353))

    def receive() -> None:
        while True:
            data, peer = sock.recvfrom(65535)
            note(state, service="udp", peer=peer[0], bytes=len(data))

    threading.Thread(target=receive, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", type=Path, required=True)
    state = parser.parse_args().state
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    serve_anthropic(state)
    serve_site(state)
    serve_udp(state)
    print("internet: listening on 443/tcp, 8443/tcp, 5353/udp", flush=True)
    signal.sigwait(stop)


if __name__ == "__main__":
    main()
