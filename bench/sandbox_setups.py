"""The three setups bench_sandbox.py measures, as processes: one `agentlog run`
whose command is the load generator serving jobs (the explicit and the
transparent client both run in it), and `agentlog proxy` on 127.0.0.1 for the
same client on the host. One fake HTTPS upstream on 127.0.0.1 serves them all,
under a name (upstream.test) that both proxies route to it.

The client in the sandbox runs as an unprivileged user, who can neither run
the venv's python (it may live under /root) nor read the worktree (it may be
private): it is a copy of loadgen.py and common.py (standard library only) in a
directory of its own, run by the system's python3. The client on the host runs
the same copy with the same python.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import loadgen
from capture_setups import CHILDREN, children_of
from common import BIN, HOST, free_port, stat_fields, wait_file_text
from setups import Bench

EXPLICIT, TRANSPARENT, ON_HOST = "explicit", "transparent", "host"
SETUPS = (EXPLICIT, TRANSPARENT, ON_HOST)
SANDBOXED = (EXPLICIT, TRANSPARENT)
NAME = "upstream.test"  # the upstream as the clients know it; --route sends it to 127.0.0.1
PYTHON = "/usr/bin/python3"  # the system's: the sandbox user can run it
AGENT_USER = "nobody"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def client_copy() -> Path:
    """loadgen.py and common.py in a fresh directory anyone may read (0755 / 0644)."""
    directory = Path(tempfile.mkdtemp(prefix="agentlog-bench-client-"))
    directory.chmod(0o755)
    here = Path(loadgen.__file__).resolve().parent
    for name in ("loadgen.py", "common.py"):
        copy = directory / name
        shutil.copyfile(here / name, copy)
        copy.chmod(0o644)
    return directory


class SandboxBench(Bench):
    """setups.Bench's upstream, `agentlog proxy` on the host (ON_HOST) and one
    `agentlog run` holding the sandboxed client (EXPLICIT, TRANSPARENT)."""

    def __init__(self, tmp: Path, client_dir: Path) -> None:
        super().__init__(tmp)
        self.client_dir = client_dir
        self.loadgen = str(client_dir / "loadgen.py")
        self.logs_of: dict[str, Path] = {}
        self.answers: queue.Queue[str | None] = queue.Queue()
        self.sandbox_status: int | None = None
        self.sandbox_name: str | None = None
        self.ready: dict = {}

    # -- processes ------------------------------------------------------

    def start(self) -> None:
        ca_file = self.start_upstream(names=(NAME,))
        self.route = [
            *("--upstream-ca", str(ca_file), "--allow", NAME),
            *("--route", f"{NAME}=127.0.0.1:{self.upstream_port}"),
        ]
        self._start_host_proxy()
        self._start_sandbox()

    def _start_host_proxy(self) -> None:
        port = free_port()
        logs = self.logs_of[ON_HOST] = self.tmp / "host-logs"
        err = self.tmp / "host.err"
        command = [str(BIN / "agentlog"), "proxy", "--logs", str(logs)]
        proc = self.spawn(
            ON_HOST,
            [*command, "--listen", f"{HOST}:{port}", *self.route],
            stdout=subprocess.DEVNULL,
            stderr=err.open("w"),
            start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
        )
        wait_file_text(err, "listening on", proc, 30)
        self.targets[ON_HOST] = {
            "host": HOST,
            "port": port,
            "proxied": True,
            "cafile": str(logs / "ca.crt"),
        }

    def _start_sandbox(self) -> None:
        logs = self.logs_of[EXPLICIT] = self.logs_of[TRANSPARENT] = self.tmp / "sandbox-logs"
        command = [str(BIN / "agentlog"), "run", "--logs", str(logs), "--user", AGENT_USER]
        proc = self.spawn(
            "sandbox",
            [*command, *self.route, "--", PYTHON, self.loadgen, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(self.tmp / "sandbox.err").open("w"),
            text=True,
            cwd="/",
            start_new_session=True,
        )
        threading.Thread(target=self._read_answers, args=(proc,), daemon=True).start()
        first = json.loads(self._answer(START_TIMEOUT, "start"))
        self.ready = first["ready"]
        if self.ready["uid"] == 0:
            raise RuntimeError("the sandboxed client runs as root: expected --user nobody")
        proxy = self.ready["env"]["HTTPS_PROXY"].split("//", 1)[1].rstrip("/")
        proxy_host, proxy_port = proxy.rsplit(":", 1)
        bundle = self.ready["env"]["SSL_CERT_FILE"]  # the system's CAs and agentlog's
        self.sandbox_name = Path(bundle).parent.name  # /run/agentlog/<name>/ca-bundle.pem
        self.targets[EXPLICIT] = {
            "host": proxy_host,
            "port": int(proxy_port),
            "proxied": True,
            "cafile": bundle,
        }
        # Ignores HTTPS_PROXY: dials the name on 443 as resolved by the sandbox's
        # resolver (agentlog's DNS); the firewall redirects it.
        self.targets[TRANSPARENT] = {"host": NAME, "port": 443, "proxied": False, "cafile": bundle}
        for job in self.targets.values():
            job.update(name=NAME, upstream_port=443)

    def _read_answers(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.answers.put(line)
        self.answers.put(None)  # the command's stdout closed: it ended

    def _answer(self, timeout: float, what: str) -> str:
        try:
            line = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(
                f"the sandboxed client said nothing in {timeout:.0f}s ({what})"
            ) from None
        if line is None:
            err = (self.tmp / "sandbox.err").read_text(errors="replace")
            raise RuntimeError(f"agentlog run ended ({what}):\n{err}")
        return line

    @property
    def sandbox_pid(self) -> int:
        return self.procs["sandbox"].pid

    def stop(self) -> None:
        """The sandbox first (its command ends when its stdin does; agentlog run then
        tears the sandbox down), then the host proxy and the upstream."""
        proc = self.procs.pop("sandbox", None)
        if proc is not None:
            self.sandbox_status = _end_sandbox(proc)
        super().stop()

    # -- one measurement ------------------------------------------------

    def client(self, setup: str, kind: str, **fields) -> dict:
        self.check_alive()
        proxy = self.sandbox_pid if setup in SANDBOXED else self.procs[ON_HOST].pid
        pids = {"proxy": proxy, "upstream": self.procs["upstream"].pid}
        if setup in SANDBOXED:
            pids.update(children_of(proxy))  # tcpdump and the rotator on the sandbox's veth
        job = {**self.targets[setup], "kind": kind, "pids": pids, **fields}
        before = user_sys(proxy)
        if setup in SANDBOXED:
            sandbox = self.procs["sandbox"]
            assert sandbox.stdin is not None
            sandbox.stdin.write(json.dumps(job) + "\n")
            sandbox.stdin.flush()
            result = json.loads(self._answer(loadgen.timeout(job), f"{setup} {kind}"))
        else:
            done = subprocess.run(
                [PYTHON, self.loadgen, json.dumps(job)],
                capture_output=True,
                text=True,
                timeout=loadgen.timeout(job),
            )
            if done.returncode != 0:
                raise RuntimeError(f"client for {setup}/{kind} failed:\n{done.stderr}")
            result = json.loads(done.stdout)
        if "error" in result:
            raise RuntimeError(f"client for {setup}/{kind} failed: {result['error']}")
        user, system = (b - a for a, b in zip(before, user_sys(proxy), strict=True))
        # the kernel's share of the proxy's CPU (the whole client run, warmup included):
        # where the veth, the firewall and capture would show
        result["proxy_sys_share_pct"] = round(100 * system / max(1, user + system), 1)
        return result


def user_sys(pid: int) -> tuple[int, int]:
    """(user, system) jiffies of process `pid` so far, all threads."""
    fields = stat_fields(f"/proc/{pid}/stat")
    return int(fields[11]), int(fields[12])


def _end_sandbox(proc: subprocess.Popen) -> int:
    """Stdin closed, then SIGTERM, then SIGKILL and `agentlog clean`: the sandbox goes
    whichever way; agentlog run's exit status (0: the client ended well)."""
    with contextlib.suppress(OSError):
        assert proc.stdin is not None
        proc.stdin.close()
    for nudge in (None, signal.SIGTERM):
        if nudge is not None:
            print("bench: agentlog run is still up, sending SIGTERM", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(nudge)
        try:
            return proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            continue
    print("bench: agentlog run ignored SIGTERM: killing it, then agentlog clean", file=sys.stderr)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run([str(BIN / "agentlog"), "clean"], check=False)
    return proc.returncode


__all__ = ["CHILDREN", "NAME", "SANDBOXED", "SETUPS", "SandboxBench", "client_copy"]
