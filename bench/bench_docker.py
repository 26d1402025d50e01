"""Docker figures: image sizes, a cold build with the base image cached, and
`docker compose up` to the first recorded request.

    .venv/bin/python bench/bench_docker.py [--runs 3]     # about 6 minutes, as root

The engine, base image and build context are the Docker tests' (tests/docker_engine.py:
our own dockerd, the debootstrap base, wheels and npm tarballs fed to offline builds);
compose runs the README's file with the tests' override (the fake Anthropic API),
Claude Code answering the tests' prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

sys.path.insert(0, str(common.ROOT))
from tests import docker_engine  # noqa: E402
from tests.test_docker import WRITE_PROMPT, Project, _down, _project  # noqa: E402


def first_request(project: Project, timeout: float = 300) -> tuple[float, float]:
    """`up` started -> the journal's first `request` event; and -> the agent's exit."""
    env = project.compose_env()
    command = project.compose_command(
        "up", "--no-build", "--abort-on-container-exit", "--exit-code-from", "agent"
    )
    journal = project.logs / "requests.jsonl"
    started = time.monotonic()
    up = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = float("nan")
    while time.monotonic() - started < timeout and up.poll() is None:
        if journal.exists() and '"event":"request"' in journal.read_text().replace(" ", ""):
            first = time.monotonic() - started
            break
        time.sleep(0.05)
    up.wait(timeout)
    return first, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="compose up runs (default 3)")
    args = parser.parse_args()
    load = os.getloadavg()
    results: dict = {"load_at_start": load}
    with docker_engine.Engine() as engine:
        started = time.monotonic()
        docker_engine.base_image(engine)
        results["base_image_ready_s"] = time.monotonic() - started
        docker_engine.feed_context()
        built = docker_engine.build_images(engine, no_cache=True)
        results["cold_build_s"] = built.seconds
        sizes = {}
        for image in (
            docker_engine.base_tag(),
            docker_engine.PROXY_IMAGE,
            docker_engine.AGENT_IMAGE,
        ):
            size = engine.docker("image", "inspect", "-f", "{{.Size}}", image).stdout.strip()
            sizes[image] = int(size)
        results["image_bytes"] = sizes
        firsts, totals = [], []
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-docker-") as directory:
                project = _project(engine, Path(directory), f"albench{run}", WRITE_PROMPT)
                try:
                    first, total = first_request(project)
                finally:
                    _down(project)
                firsts.append(first)
                totals.append(total)
        results["compose_up_to_first_request_s"] = firsts
        results["compose_up_to_agent_exit_s"] = totals
    results["load_at_end"] = os.getloadavg()
    print(json.dumps(results, indent=1))
    print(f"sizes (MB): { {k: round(v / 1e6) for k, v in sizes.items()} }")
    print(f"cold build (s): { {k: round(v, 1) for k, v in built.seconds.items()} }")
    print(f"compose up -> first request: median {common.median(firsts):.2f} s of {firsts}")
    print(f"compose up -> agent done: median {common.median(totals):.2f} s")


if __name__ == "__main__":
    main()
