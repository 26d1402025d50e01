"""Claude Code recorded by `agentlog run`, against the fake Anthropic API: one scenario a call.

``claude_run(scenario)`` is the reusable part (the end-to-end suite uses it; a UI
test can open the run it leaves)::

    with claude_run(WRITE) as run:
        run.logs, run.usage, run.turns, run.stdout ...

What a run is, as a user would set it up:

* a fake Anthropic API (tests/fakes/anthropic.py) on 127.0.0.1 with a test CA's
  certificate for api.anthropic.com; agentlog routes the name there
  (``--route``), trusts the test CA upstream (``--upstream-ca``) and allows
  that name alone (``--allow``): whatever else Claude Code calls is refused;
* the real ``claude`` (tests/claude_code.py) as `nobody`, with ``-p PROMPT`` and
  ``--permission-mode acceptEdits`` (so a Write needs no prompt), in a working
  directory and a HOME of its own (agentlog sets HOME to the user's, and
  nobody's does not exist, so ``env`` sets it back in the command);
* ANTHROPIC_API_KEY a recognisable fake key, DISABLE_AUTOUPDATER=1, and
  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 unless the scenario wants the side
  calls; the capture is on (`agentlog run` always captures).
"""

from __future__ import annotations

import os
import pwd
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.claude_code import claude_binary
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.certs import issue_leaf, make_ca
from tests.sandbox_runs import AGENT_USER, agentlog_run, shared_dir

ANTHROPIC = "api.anthropic.com"
API_KEY = "sk-ant-api03-agentlogTestKey" + "Fk7Qx2Lm9Rz4Wb8Ny3Hd6Jc1Vt5Gs0Pe" * 2 + "AA"
RUN_TIMEOUT = 180


@dataclass(frozen=True)
class Scenario:
    name: str
    prompt: str
    nonessential: bool = False  # leave Claude Code's side calls on


TEXT = Scenario("text", "Say hello to agentlog, please.")
WRITE = Scenario("write", 'Please write the file hello.txt containing "hello from the fake"')
SIDE_CALLS = Scenario("side-calls", "Say hello with every side call on.", nonessential=True)
RATE_LIMITED = Scenario("429", "Say hello after a rate limit [fail:429]")
OVERLOADED = Scenario("529", "Say hello after an overload [fail:529]")


@dataclass(frozen=True)
class ClaudeRun:
    scenario: Scenario
    logs: Path  # the logs directory agentlog wrote
    workdir: Path  # Claude Code's working directory
    result: subprocess.CompletedProcess
    requests: list[dict[str, Any]]  # what the fake answered, in order (its log)
    turns: list[dict[str, Any]]  # the messages it answered 200: turn kind, usage, reply
    usage: dict[str, int]  # the fake's usage numbers summed over those turns
    upstream_port: int  # where the fake listened: every upstream connection goes here

    @property
    def stdout(self) -> str:
        return self.result.stdout


def claude_command(binary: Path, home: Path, workdir: Path, scenario: Scenario) -> list[str]:
    settings = ["DISABLE_AUTOUPDATER=1"]
    if not scenario.nonessential:
        settings.append("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1")
    return [
        *("env", "-C", str(workdir), f"HOME={home}", *settings),
        *(str(binary), "-p", scenario.prompt, "--permission-mode", "acceptEdits"),
    ]


def _agent_dir(path: Path) -> Path:
    user = pwd.getpwnam(AGENT_USER)
    path.mkdir(mode=0o755)
    os.chown(path, user.pw_uid, user.pw_gid)
    return path


def record(directory: Path, scenario: Scenario) -> ClaudeRun:
    """Run `scenario` under `agentlog run` in `directory` (one anyone may enter)."""
    binary = claude_binary()
    ca = make_ca("agentlog test Anthropic CA")
    ca_file = ca.write(directory, "anthropic-ca.pem")
    cert, key = issue_leaf(ca, [ANTHROPIC]).write(directory, "anthropic")
    home, workdir = _agent_dir(directory / "home"), _agent_dir(directory / "work")
    logs = directory / "logs"
    with FakeAnthropic(str(cert), str(key)) as fake:
        args = [
            *("--upstream-ca", str(ca_file), "--allow", ANTHROPIC),
            *("--route", f"{ANTHROPIC}=127.0.0.1:{fake.port}"),
        ]
        env = {**os.environ, "ANTHROPIC_API_KEY": API_KEY}
        result = agentlog_run(
            logs,
            args,
            *claude_command(binary, home, workdir, scenario),
            timeout=RUN_TIMEOUT,
            env=env,
        )
        return ClaudeRun(
            scenario=scenario,
            logs=logs,
            workdir=workdir,
            result=result,
            requests=fake.requests(),
            turns=fake.turns(),
            usage=fake.usage_totals(),
            upstream_port=fake.port,
        )


@contextmanager
def claude_run(scenario: Scenario) -> Iterator[ClaudeRun]:
    """`record` in a directory of its own, removed afterwards."""
    with shared_dir() as directory:
        yield record(directory, scenario)
