"""The journal: write-ahead writer, chain, and `agentlog verify` catching tampering."""

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog.journal import chain
from agentlog.journal.writer import JournalWriter
from agentlog.logsdir import LogsDir, read_or_create_key
from agentlog.redact import Redactor
from tests import harness

KEY = b"k" * 32


def write_events(root: Path, count: int) -> LogsDir:
    logs = LogsDir(root)
    logs.prepare()
    key = read_or_create_key(logs.journal_key)
    writer = JournalWriter(logs, key, Redactor())
    writer.start()
    before = writer.seq
    for i in range(count):
        writer.append({"v": 1, "event": "request", "id": f"id{i}", "seq": None})
    writer.close()  # drains what was appended
    assert writer.seq == before + count
    return logs


def test_write_ahead_resolves_with_seq_on_the_loop(tmp_path):
    logs = LogsDir(tmp_path)
    logs.prepare()
    writer = JournalWriter(logs, KEY, Redactor())
    writer.start()

    async def many() -> list[int]:
        return await asyncio.gather(
            *(writer.write_ahead({"event": "request", "id": str(i)}) for i in range(50))
        )

    assert sorted(asyncio.run(many())) == list(range(1, 51))
    writer.close()
    assert chain.verify(logs.journal.read_bytes().splitlines(keepends=True), KEY).ok


def verify(logs: LogsDir) -> subprocess.CompletedProcess:
    return harness.verify(logs.root)


@given(st.lists(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=20)), max_size=8))
def test_sealed_lines_verify_and_any_byte_flip_is_caught(events):
    lines, prev = [], b""
    for seq, event in enumerate(events, 1):
        prev = chain.seal({**event, "seq": seq}, KEY, prev)
        lines.append(prev)
    assert chain.verify(lines, KEY).ok
    if lines:
        flipped = bytearray(lines[-1])
        flipped[2] ^= 1
        verdict = chain.verify([*lines[:-1], bytes(flipped)], KEY)
        assert not verdict.ok and verdict.bad_line == len(lines)
        assert not chain.verify(lines, b"x" * 32).ok  # wrong key


@given(st.text(alphabet=st.characters(codec=None), max_size=30))
def test_any_text_seals_as_utf8_json(text):
    line = chain.seal({"seq": 1, "h": text, text: 1}, KEY, b"")
    line.decode("utf-8")  # valid UTF-8, whatever the agent sent
    assert json.loads(line)["seq"] == 1
    assert chain.verify([line], KEY).ok


def test_writer_continues_seq_and_chain_across_restarts(tmp_path):
    logs = write_events(tmp_path, 5)
    write_events(tmp_path, 3)
    seqs = [json.loads(line)["seq"] for line in logs.journal.read_bytes().splitlines()]
    assert seqs == list(range(1, 9))
    result = verify(logs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 lines" in result.stdout
    assert oct(logs.journal.stat().st_mode & 0o777) == "0o640"
    assert oct(logs.journal_key.stat().st_mode & 0o777) == "0o600"


def test_torn_last_line_is_reported_then_recovered_on_restart(tmp_path):
    logs = write_events(tmp_path, 4)
    with open(logs.journal, "ab") as f:
        f.write(b'{"v":1,"event":"request","id":"half')  # a crash mid-write
    result = verify(logs)
    assert result.returncode == 1
    assert ":5: torn last line" in result.stdout and "4 lines before it verify" in result.stdout
    write_events(tmp_path, 2)  # a restarted writer moves the torn bytes aside
    assert verify(logs).returncode == 0
    assert b'"id":"half' in logs.torn.read_bytes()
    assert oct(logs.torn.stat().st_mode & 0o777) == "0o640"
    events = [json.loads(line) for line in logs.journal.read_bytes().splitlines()]
    # The torn line had seq 5 (it never got as far as saying so): never used again.
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 6, 7, 8]
    recovered = events[4]
    assert (recovered["event"], recovered["action"]) == ("journal", "recovered")
    assert (recovered["skipped_from"], recovered["skipped_to"]) == (5, 5)
    assert recovered["moved_bytes"] == len(b'{"v":1,"event":"request","id":"half')


def _tamper(logs: LogsDir, change) -> subprocess.CompletedProcess:
    lines = logs.journal.read_bytes().splitlines(keepends=True)
    logs.journal.write_bytes(b"".join(change(lines)))
    return verify(logs)


def _edit(lines):
    lines[2] = lines[2].replace(b'"id":"id2"', b'"id":"idX"')
    return lines


def _forge(lines):
    # Without the key a forger can only guess: reuse the last line's fields.
    forged = json.loads(lines[-1])
    forged.update(seq=forged["seq"] + 1, id="forged")
    return [*lines, json.dumps(forged, separators=(",", ":")).encode() + b"\n"]


@pytest.mark.parametrize(
    ("change", "bad_line", "why"),
    [
        (_edit, 3, "altered or forged"),
        (lambda lines: lines[:3] + lines[4:], 4, "chain broken"),
        (lambda lines: [*lines[:3], lines[4], lines[3], *lines[5:]], 4, "chain broken"),
        (_forge, 7, "altered or forged"),
    ],
    ids=["edited", "deleted", "swapped", "forged-appended"],
)
def test_verify_names_the_first_bad_line(tmp_path, change, bad_line, why):
    logs = write_events(tmp_path, 6)
    assert verify(logs).returncode == 0
    result = _tamper(logs, change)
    assert result.returncode == 1
    assert f"requests.jsonl:{bad_line}: " in result.stdout and why in result.stdout


def test_verify_with_wrong_key_fails_and_missing_key_is_one_line(tmp_path):
    logs = write_events(tmp_path, 2)
    logs.journal_key.write_text("00" * 32)
    assert verify(logs).returncode == 1
    logs.journal_key.unlink()
    result = verify(logs)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
