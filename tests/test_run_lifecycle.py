"""`agentlog run` from start to end: the terminal, signals, teardown, leftovers, two at once.

After every way a run can end (the command exits, Ctrl-C on a real terminal,
SIGTERM, SIGKILL followed by `agentlog clean`), `ip netns list`, `ip -br
link`, `nft list ruleset` and `iptables-save` read as before it started, and
the journal ends with the proxy's `stop` (except after SIGKILL) and verifies.
"""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests import hoststate
from tests.conftest import UPSTREAM, proxy_args
from tests.harness import agentlog, verify
from tests.netns import can_make_namespaces
from tests.sandbox_runs import (
    agent_python,
    agentlog_run,
    events,
    run_command,
    sandbox_of,
    start_run,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, nft"),
]


@pytest.fixture
def args(upstream, upstream_ca) -> list[str]:
    return proxy_args(upstream, upstream_ca[1])


@pytest.fixture
def host_unchanged():
    """The host as it was before the test, checked at its end (other live runs aside)."""
    before = hoststate.snapshot()
    yield
    after = hoststate.snapshot()
    assert after == before, hoststate.differences(before, after)


def complete(logs: Path) -> None:
    found = events(logs)
    assert found[-1]["event"] == "journal" and found[-1]["action"] == "stop"
    assert verify(logs).returncode == 0


class Terminal:
    """`agentlog run` on a pseudo-terminal that is its controlling terminal, as in a shell."""

    def __init__(self, command: list[str]) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.output = b""
        # setsid -c: a session of its own, with the pty as its controlling terminal, so
        # ^C is the terminal driver's SIGINT to the foreground process group.
        self.proc = subprocess.Popen(
            ["setsid", "-c", *command], stdin=slave, stdout=slave, stderr=slave, cwd="/"
        )
        os.close(slave)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def wait_for(self, text: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, self.output.decode(errors="replace")
            assert self.proc.poll() is None, self.output.decode(errors="replace")
            time.sleep(0.05)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> int:
        status = self.proc.wait(60)
        self._reader.join(5)
        os.close(self.master)
        return status


def test_a_normal_exit_leaves_the_host_as_it_was(tmp_path, args, host_unchanged):
    logs = tmp_path / "logs"
    result = agentlog_run(
        logs, args, "curl", "-sS", "--max-time", "20", f"https://{UPSTREAM}/hello"
    )
    assert result.returncode == 0 and result.stdout == "hello", result.stderr
    complete(logs)
    assert f"sandbox {sandbox_of(logs)}" in result.stderr


def test_the_terminal_passes_through_and_ctrl_c_ends_the_run(tmp_path, args, host_unchanged):
    logs = tmp_path / "logs"
    script = "test -t 0 && test -t 1 && echo on-a-tty; read line; echo got $line; exec sleep 60"
    term = Terminal(run_command(logs, args, ["sh", "-c", script]))
    term.wait_for(b"on-a-tty")
    term.type(b"typed\n")
    term.wait_for(b"got typed")
    term.type(b"\x03")  # Ctrl-C
    assert term.close() == 128 + signal.SIGINT, term.output
    complete(logs)


HANDLES_CTRL_C = """
import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: print("caught", flush=True))
print("ready", flush=True)
signal.pause()
time.sleep(0.5)
sys.exit(3)
"""


def test_a_command_that_handles_ctrl_c_keeps_its_sandbox(tmp_path, args, host_unchanged):
    """An interactive agent uses Ctrl-C to interrupt itself, not to end agentlog."""
    logs = tmp_path / "logs"
    term = Terminal(run_command(logs, args, agent_python(HANDLES_CTRL_C)))
    term.wait_for(b"ready")
    term.type(b"\x03")
    term.wait_for(b"caught")
    assert term.close() == 3, term.output
    complete(logs)


def test_sigterm_is_passed_on_and_everything_is_taken_down(tmp_path, args, host_unchanged):
    logs = tmp_path / "logs"
    run = start_run(logs, args, "sh", "-c", "echo ready; exec sleep 60")
    assert run.stdout is not None and run.stdout.readline() == "ready\n"
    run.send_signal(signal.SIGTERM)
    assert run.wait(60) == 128 + signal.SIGTERM
    complete(logs)


def _has_namespace(run: subprocess.Popen) -> bool:
    """Whether the run has made its namespace (named `al<its pid>s<n>`)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return any(line.startswith(f"al{run.pid}s") for line in listed.splitlines())


def test_sigterm_while_setting_up_undoes_what_was_done(tmp_path, args, host_unchanged):
    """SIGTERM as soon as the run has made its namespace, and as soon as its proxy has
    started: stages seen from outside, not delays (a loaded machine moves them)."""
    stages = {
        "namespace made": lambda run, logs: _has_namespace(run),
        "proxy started": lambda run, logs: (logs / "requests.jsonl").exists(),
    }
    for stage, reached in stages.items():
        logs = tmp_path / stage.replace(" ", "-")
        run = start_run(logs, args, "sleep", "60")
        deadline = time.monotonic() + 60
        while not reached(run, logs):
            assert run.poll() is None and time.monotonic() < deadline, f"never {stage}"
            time.sleep(0.005)
        run.send_signal(signal.SIGTERM)
        assert run.wait(60) == 128 + signal.SIGTERM, stage
        assert "Traceback" not in (run.stderr.read() if run.stderr else ""), stage


def test_after_sigkill_clean_removes_the_sandbox(tmp_path, args, host_unchanged):
    logs = tmp_path / "logs"
    run = start_run(logs, args, "sh", "-c", "echo ready; exec sleep 60")
    assert run.stdout is not None and run.stdout.readline() == "ready\n"
    name = sandbox_of(logs)
    run.kill()
    run.wait(10)
    assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    cleaned = agentlog("clean", name)
    assert cleaned.returncode == 0 and cleaned.stdout == f"removed {name}\n", cleaned.stderr
    assert agentlog("clean", name).stdout == "nothing to clean\n"
    left = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True).stdout
    assert left == "", f"processes of {name} survived: {left}"
    assert verify(logs).returncode == 0  # no `stop` line, but every line written is whole


def test_the_next_run_removes_a_killed_runs_sandbox(tmp_path, args, host_unchanged):
    logs = tmp_path / "logs"
    run = start_run(logs, args, "sh", "-c", "echo ready; exec sleep 60")
    assert run.stdout is not None and run.stdout.readline() == "ready\n"
    name = sandbox_of(logs)
    run.kill()
    run.wait(10)
    again = agentlog_run(tmp_path / "again", args, "true")
    assert again.returncode == 0, again.stderr
    assert f"removed sandbox {name}" in again.stderr


def test_two_runs_at_once_do_not_see_each_others_traffic(tmp_path, args):
    runs = []
    for n in (1, 2):
        curl = f"curl -sS --max-time 20 'https://{UPSTREAM}/echo?run={n}"
        script = f"{curl}' >/dev/null; sleep 2; {curl}&again=1' >/dev/null; echo done"
        logs = tmp_path / f"logs{n}"
        runs.append((logs, start_run(logs, args, "sh", "-c", script)))
    for _, run in runs:
        assert run.wait(60) == 0, run.stderr.read() if run.stderr else ""
    clients = []
    for n, (logs, _) in enumerate(runs, start=1):
        paths = [e["path"] for e in events(logs, "request")]
        assert paths == [f"/echo?run={n}", f"/echo?run={n}&again=1"]
        clients.append({e["client"].split(":")[0] for e in events(logs, "request")})
        complete(logs)
        # Its captures hold its own flows only: each has its event in its own journal.
        audited = agentlog("audit", "--logs", logs)
        assert audited.returncode == 0, audited.stdout + audited.stderr
    assert clients[0].isdisjoint(clients[1])
    assert sandbox_of(runs[0][0]) != sandbox_of(runs[1][0])
