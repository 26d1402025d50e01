"""The Docker tests' own engine leaves the host as it found it, even after a run of
them was killed with SIGKILL (tests/docker_engine.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests import hoststate
from tests.docker_engine import ROOT, Engine

pytestmark = [
    pytest.mark.docker,
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("apt-get"), reason="needs root, apt"),
]

HOLD_AN_ENGINE = """
import time
from tests.docker_engine import Engine
with Engine():
    print("up", flush=True)
    time.sleep(600)
"""


def test_an_engine_left_by_a_killed_run_is_undone_by_the_next() -> None:
    before = hoststate.snapshot()
    killed = subprocess.Popen(
        [sys.executable, "-c", HOLD_AN_ENGINE], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert killed.stdout is not None and killed.stdout.readline() == "up\n"
        assert hoststate.snapshot() != before, "dockerd changed nothing: this proves nothing"
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        if killed.stdout is not None:
            killed.stdout.close()
    assert hoststate.snapshot() != before  # dockerd still runs, its rules stay: nobody undid them
    with Engine():
        pass
    after = hoststate.snapshot()
    assert after == before, hoststate.differences(before, after)
