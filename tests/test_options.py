"""Each option is declared once (agentlog.options): README, --help and the defaults agree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentlog import options
from agentlog.cli import build_parser

README = Path(__file__).resolve().parent.parent / "README.md"
_ROW = re.compile(r"^\| `(--[a-z-]+)(?: ([A-Z:=_]+))?` \| `(AGENTLOG_[A-Z_]+)`[^|]*\| ([^|]*) \|")


def readme_rows() -> dict[str, tuple[str, str | None, str | None]]:
    """env -> (flag, metavar, default): a flag (--listen) may belong to two commands."""
    rows = {}
    for line in README.read_text().splitlines():
        if m := _ROW.match(line):
            flag, metavar, env, default = m.groups()
            rows[env] = (flag, metavar, default.strip().strip("`") or None)
    return rows


def test_readme_option_tables_are_the_option_tables():
    every = (
        options.LOGS,
        *options.PROXY,
        *options.UI,
        *options.UP,
        *options.RUN,
        *options.SHOW,
        *options.SESSIONS,
    )
    declared = {o.env: (o.flag, o.metavar, o.default) for o in every}
    assert readme_rows() == declared


def test_defaults_come_from_the_table(monkeypatch):
    for option in (options.LOGS, *options.PROXY):
        monkeypatch.delenv(option.env, raising=False)
    config = options.proxy_config(build_parser().parse_args(["proxy", "--capture", "eth9"]))
    assert config.listen == ("127.0.0.1", 8080)
    assert config.body_cap == 1024 * 1024
    assert config.capture is not None
    assert config.capture.max_bytes == 100 * 1024 * 1024  # 100M means MiB, everywhere
    assert config.capture.max_seconds == 3600
    assert str(config.logs) == "logs"


def test_environment_values_are_parsed_like_flags(monkeypatch):
    monkeypatch.setenv("AGENTLOG_ALLOW", "a.test, *.b.test:443")
    monkeypatch.setenv("AGENTLOG_BODY_CAP", "2k")
    monkeypatch.setenv("AGENTLOG_FINGERPRINT", "true")
    args = build_parser().parse_args(["proxy", "--allow", "c.test", "--body-cap", "3k"])
    config = options.proxy_config(args)
    assert [str(r) for r in config.policy.rules] == [
        "allow a.test",
        "allow *.b.test:443",
        "allow c.test",
    ]
    assert config.body_cap == 3 * 1024  # the flag wins over the variable
    assert config.fingerprint


@pytest.mark.parametrize(
    ("env", "value", "word"),
    [
        ("AGENTLOG_ALLOW", "ok.test,bad host!", "--allow"),
        ("AGENTLOG_LISTEN", "nowhere", "--listen"),
        ("AGENTLOG_CAPTURE_EVERY", "soon", "duration"),
    ],
)
def test_bad_environment_values_are_one_line_errors(tmp_path, env, value, word):
    result = subprocess.run(
        [sys.executable, "-m", "agentlog", "proxy", "--logs", str(tmp_path)],
        env={"PATH": "/usr/bin:/bin", env: value},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and word in result.stderr
    assert "Traceback" not in result.stderr


def test_importing_the_cli_loads_no_mitmproxy():
    """The read commands start fast and the proxy installs its TLS key log before
    mitmproxy makes any TLS context: nothing the CLI imports up front pulls mitmproxy in."""
    code = "import sys, agentlog.cli; print(sorted(m for m in sys.modules if 'mitmproxy' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
