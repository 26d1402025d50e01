"""schemathesis against the UI's OpenAPI schema: no 500, no answer outside the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.journal import JournalMaker
from tests.ui_harness import last_seq, start_ui

pytestmark = pytest.mark.timeout(600)
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_schemathesis_finds_no_error_and_no_schema_violation(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    maker = JournalMaker(logs)
    maker.write(40)
    samples = Path(__file__).resolve().parent / "llm_samples"
    call = maker.model_call(
        (samples / "anthropic_request.json").read_bytes(),
        (samples / "anthropic_tool_use.sse").read_bytes(),
        "text/event-stream",
    )
    (logs / "capture_20260101_000000.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))
    ui = start_ui(logs)
    try:
        ui.wait_indexed(last_seq(logs))
        row = ui.get("/api/exchanges", method="POST", limit=1).json()["items"][0]
        # Real ids, so the operations that take one get past 404 too (the two pcap
        # routes still answer 404 here: this journal has no capture).
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            f"""
[[operations]]
include-path-regex = "^/api/exchanges/\\\\{{id\\\\}}(/bodies|/pcap|$)"
parameters = {{ "path.id" = "{row["id"]}", "path.which" = "response" }}

[[operations]]
include-path = "/api/exchanges/{{id}}/conversation"
parameters = {{ "path.id" = "{call}" }}

[[operations]]
include-path-regex = "^/api/sessions/\\\\{{id\\\\}}/"
parameters = {{ "path.id" = "{row["session"]}" }}

[[operations]]
include-path = "/api/captures/{{id}}"
parameters = {{ "path.id" = "20260101_000000" }}
"""
        )
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                config,
                "run",
                f"{ui.base}/api/openapi.json",
                "-H",
                f"Authorization: Bearer {ui.token}",
                "--exclude-path",
                "/api/live",  # a stream that never ends: tested in test_ui_api.py
                "--checks",
                "all",
                "--max-examples",
                "40",
                "--seed",
                "1",
                "--request-timeout",
                "20",
            ],
            capture_output=True,
            text=True,
            timeout=500,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert ui.proc.poll() is None
    finally:
        assert ui.stop() == 0
