"""The Docker files, read without an engine: linted, valid, pinned, and isolated as the
README says (tests/test_docker.py runs them on a real engine)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.claude_code import VERSION as CLAUDE_CODE_VERSION
from tests.docker_engine import COMPOSE, ROOT, base_tag, dockerfile_arg

DOCKERFILES = [ROOT / "docker" / "Dockerfile.proxy", ROOT / "docker" / "Dockerfile.agent"]
COMPOSE_FILE = ROOT / "docker-compose.yml"
OVERRIDE = ROOT / "tests" / "docker-compose.test.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path):
    hadolint = shutil.which("hadolint") or str(Path(__file__).parent.parent / ".venv/bin/hadolint")
    done = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not Path(COMPOSE).exists(), reason="docker-compose is not installed")
@pytest.mark.parametrize("files", [[COMPOSE_FILE], [COMPOSE_FILE, OVERRIDE]], ids=["main", "test"])
def test_docker_compose_config_accepts_the_files(files, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    env |= {"AGENTLOG_TEST_FAKES": str(tmp_path), "AGENTLOG_TEST_STATE": str(tmp_path)}
    args = [arg for f in files for arg in ("-f", str(f))]
    done = subprocess.run([COMPOSE, *args, "config", "-q"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_versions_are_pinned():
    assert re.fullmatch(r"debian:trixie-\d{8}-slim", base_tag())
    assert dockerfile_arg("CLAUDE_CODE_VERSION") == CLAUDE_CODE_VERSION
    pins = (ROOT / "docker" / "requirements.txt").read_text()
    assert re.search(r"^mitmproxy==12\.3\.\d+$", pins, re.MULTILINE)
    requirements = [line for line in pins.splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in requirements), requirements
    pinned = {_name(line.split("==")[0]) for line in requirements}
    wanted = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    missing = {_name(re.split(r"[<>=!~\[ ;]", dep)[0]) for dep in wanted} - pinned
    assert not missing, f"agentlog's dependencies not in docker/requirements.txt: {missing}"


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", requirement.strip()).lower()


def test_the_agent_network_is_internal_and_the_proxy_its_only_peer():
    spec = compose()
    assert spec["networks"]["agent"]["internal"] is True
    on_agent_net = {name for name, s in spec["services"].items() if "agent" in s["networks"]}
    assert on_agent_net == {"proxy", "agent"}
    assert list(spec["services"]["agent"]["networks"]) == ["agent"]
    assert "outside" in spec["services"]["proxy"]["networks"]


def test_the_ui_is_published_on_the_hosts_loopback_only():
    spec = compose()
    assert spec["services"]["proxy"]["ports"] == ["127.0.0.1:8888:8888"]
    assert "ports" not in spec["services"]["agent"]


def test_the_agent_gets_the_ca_volume_read_only_and_no_logs():
    spec = compose()
    agent = spec["services"]["agent"]["volumes"]
    assert "ca:/ca:ro" in agent
    assert not [v for v in agent if "logs" in v.split(":")[0]]
    assert "./logs:/logs" in spec["services"]["proxy"]["volumes"]
    assert spec["services"]["agent"]["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["services"]["agent"]["security_opt"]


def test_the_test_override_adds_fakes_and_routes_only():
    override = yaml.safe_load(OVERRIDE.read_text())
    assert set(override) == {"services"}
    assert set(override["services"]) == {"internet", "proxy"}
    proxy = override["services"]["proxy"]
    assert set(proxy) <= {"environment", "volumes", "depends_on"}
    assert set(proxy["environment"]) <= {"AGENTLOG_ALLOW", "AGENTLOG_ROUTE", "AGENTLOG_UPSTREAM_CA"}
    assert override["services"]["internet"]["networks"] == ["outside"]
