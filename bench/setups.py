"""The setups the benchmarks measure, as processes: the fake HTTPS upstream
(tests/fakes), bare mitmdump, and agentlog proxy, all on 127.0.0.1; and loadgen
runs against them.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import loadgen
from common import BIN, HOST, ROOT, free_port, wait_file_text, wait_port

SETUPS = ("direct", "mitmdump", "agentlog")
STREAM_SETUP = "mitmdump-stream"  # optional: mitmdump --set stream_large_bodies=1


class Bench:
    """The processes of a benchmark, and loadgen runs against them.

    `start` starts the fake upstream, mitmdump (and mitmdump-stream with
    `stream_baseline`) and agentlog proxy, each on a free port of HOST; `client`
    runs one loadgen job against one setup. `pin_map` maps a process name
    ("upstream", "client", a setup) to the CPUs taskset pins it to.
    """

    def __init__(
        self, tmp: Path, *, pin_map: dict[str, str] | None = None, stream_baseline: bool = False
    ) -> None:
        self.tmp = tmp  # scratch dir: certificates, logs dirs, process output
        self.pin_map = pin_map or {}
        self.stream_baseline = stream_baseline
        self.procs: dict[str, subprocess.Popen] = {}
        self.commands: dict[str, list[str]] = {}
        self.targets: dict[str, dict] = {}  # setup -> client job fields

    # -- processes ------------------------------------------------------

    def spawn(self, name: str, cmd: list[str], **kwargs) -> subprocess.Popen:
        """Start `cmd` as process `name`, under taskset if `pin_map` names it."""
        if name in self.pin_map:
            cmd = ["taskset", "-c", self.pin_map[name], *cmd]
        self.commands[name] = cmd
        proc = subprocess.Popen(cmd, **{"stdin": subprocess.DEVNULL, **kwargs})
        self.procs[name] = proc
        return proc

    def start(self) -> None:
        ca_file = self.start_upstream()
        self._start_mitmdump("mitmdump", ca_file)
        if self.stream_baseline:
            self._start_mitmdump(STREAM_SETUP, ca_file, "--set", "stream_large_bodies=1")

        port = free_port()
        self.logs = self.tmp / "agentlog-logs"
        al = self.spawn(
            "agentlog",
            [
                str(BIN / "agentlog"),
                "proxy",
                "--logs",
                str(self.logs),
                "--listen",
                f"{HOST}:{port}",
                "--upstream-ca",
                str(ca_file),
                "--allow",
                HOST,
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / "agentlog.err").open("w"),
        )
        wait_file_text(self.tmp / "agentlog.err", "listening on", al, 30)
        self.targets["agentlog"] = {
            "port": port,
            "cafile": str(self.logs / "ca.crt"),
            "proxied": True,
        }
        for job in self.targets.values():
            job["upstream_port"] = self.upstream_port

    def start_upstream(self, names: tuple[str, ...] = ()) -> Path:
        """The fake HTTPS upstream on HOST (sets self.upstream_port and the `direct`
        target), its certificate also valid for `names`; returns the CA file that
        signed it."""
        sys.path.insert(0, str(ROOT))
        from tests.fakes.certs import issue_leaf, make_ca

        ca = make_ca("agentlog bench CA")
        ca_file = ca.write(self.tmp, "upstream-ca.pem")
        cert, key = issue_leaf(ca, ["127.0.0.1", "localhost", *names]).write(self.tmp, "upstream")
        out = (self.tmp / "upstream.out").open("w+")
        up = self.spawn(
            "upstream",
            [sys.executable, "-m", "tests.fakes.upstream", "--cert", str(cert), "--key", str(key)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        line = wait_file_text(self.tmp / "upstream.out", '"port"', up, 20)
        upstream_port = json.loads(line)["port"]
        self.upstream_port = upstream_port
        self.targets["direct"] = {"port": upstream_port, "cafile": str(ca_file), "proxied": False}
        return ca_file

    def _start_mitmdump(self, name: str, ca_file: Path, *extra: str) -> None:
        port = free_port()
        confdir = self.tmp / f"{name}-conf"
        confdir.mkdir()
        proc = self.spawn(
            name,
            [
                str(BIN / "mitmdump"),
                "-q",
                "--listen-host",
                HOST,
                "--listen-port",
                str(port),
                "--set",
                "connection_strategy=lazy",
                "--set",
                f"ssl_verify_upstream_trusted_ca={ca_file}",
                "--set",
                f"confdir={confdir}",
                *extra,
            ],
            stdout=(self.tmp / f"{name}.out").open("w"),
            stderr=subprocess.STDOUT,
        )
        wait_port(port, proc, 30)
        cafile = confdir / "mitmproxy-ca-cert.pem"
        self.targets[name] = {"port": port, "cafile": str(cafile), "proxied": True}

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in self.procs.items():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                print(f"bench: {name} ignored SIGTERM, killing it", file=sys.stderr)
                proc.kill()
                proc.wait()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} died (exit {proc.returncode}); see {self.tmp}")

    # -- one measurement ------------------------------------------------

    def client_command(self, job: dict) -> list[str]:
        """The loadgen process for `job`, pinned to the client's CPUs with --pin."""
        cmd = loadgen.command(job)
        if "client" in self.pin_map:
            cmd = ["taskset", "-c", self.pin_map["client"], *cmd]
        return cmd

    def client(self, setup: str, kind: str, **fields) -> dict:
        self.check_alive()
        pids = {"upstream": self.procs["upstream"].pid}
        if setup != "direct":
            pids["proxy"] = self.procs[setup].pid
        job = {**self.targets[setup], "kind": kind, "pids": pids, **fields}
        cmd = self.client_command(job)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=loadgen.timeout(job))
        if done.returncode != 0:
            raise RuntimeError(f"client for {setup}/{kind} failed:\n{done.stderr}")
        return json.loads(done.stdout)
