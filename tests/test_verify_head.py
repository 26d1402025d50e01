"""Cutting the journal's tail: the attacker can rewrite the logs directory, not the key
nor the head the user kept (printed by the proxy, or its --head-file).

Each attack is made on a journal written by the real proxy; then come the pure rules
of chain.verify and of recovery at start.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog.errors import ConfigError
from agentlog.journal import chain, recovery
from agentlog.journal.headfile import HeadFile, format_head, parse_head
from agentlog.journal.recovery import JournalCutError
from agentlog.journal.writer import JournalWriter
from agentlog.logsdir import LogsDir
from agentlog.redact import Redactor
from tests.conftest import UPSTREAM, proxy_args
from tests.harness import RunningProxy, agentlog, curl, start_proxy

pytestmark = pytest.mark.timeout(120)

_STOPPED = re.compile(r"stopped; journal head seq=(\d+) hmac=([0-9a-f]{64})")


# -- the real proxy, attacked -------------------------------------------------


def run_proxy(logs: Path, upstream, upstream_ca, *extra: str, requests: int = 2) -> RunningProxy:
    """Start the proxy, make `requests` requests through it, stop it."""
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]), *extra)
    for i in range(requests):
        assert curl(proxy, f"https://{UPSTREAM}/hello?n={i}").stdout == b"hello"
    proxy.wait_for(lambda es: responses_since_start(es) == requests)
    assert proxy.stop() == 0
    return proxy


def responses_since_start(events: list[dict]) -> int:
    starts = [i for i, e in enumerate(events) if e.get("action") == "start"]
    return sum(e["event"] == "response" for e in events[starts[-1] :]) if starts else -1


def printed_head(proxy: RunningProxy) -> tuple[int, str]:
    """The final head the proxy printed on stderr, as a user would copy it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in proxy.stderr:
            if m := _STOPPED.search(line):
                return int(m.group(1)), m.group(2)
        time.sleep(0.05)
    raise AssertionError("no final head printed: " + "".join(proxy.stderr))


def journal_lines(logs: Path) -> list[bytes]:
    return (logs / "requests.jsonl").read_bytes().splitlines(keepends=True)


def events(logs: Path) -> list[dict]:
    return [json.loads(line) for line in journal_lines(logs)]


def key_of(logs: Path) -> bytes:
    return bytes.fromhex((logs / "journal.key").read_text().strip())


def verify(logs: Path, *args: str):
    return agentlog("verify", "--logs", logs, *args)


def verify_head(logs: Path, head: tuple[int, str]):
    return verify(logs, "--head", format_head(head))


def refused_start(logs: Path, upstream, upstream_ca, *extra: str):
    """The proxy must refuse to start: it exits by itself (a hang fails the test)."""
    return agentlog(
        "proxy",
        "--logs",
        logs,
        "--listen",
        "127.0.0.1:0",
        *proxy_args(upstream, upstream_ca[1]),
        *extra,
        timeout=30,
    )


def test_cut_last_lines_fail_verify_head_naming_the_missing_seqs(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    head = printed_head(run_proxy(logs, upstream, upstream_ca))
    held = verify_head(logs, head)
    assert held.returncode == 0, held.stdout
    assert f"is line {head[0]}: the last line" in held.stdout
    # The proxy's own spelling of the head is accepted as it was printed, too.
    pasted = verify(logs, "--head", f"seq={head[0]} hmac={head[1]}")
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr

    lines = journal_lines(logs)
    (logs / "requests.jsonl").write_bytes(b"".join(lines[:-3]))  # whole lines: no torn tail

    assert verify(logs).returncode == 0  # what is left is a chain that holds ...
    cut = verify_head(logs, head)  # ... but not the head the user kept
    assert cut.returncode == 1
    n = head[0]
    assert f"requests.jsonl:{n - 2}: the journal ends at seq {n - 3}" in cut.stdout
    assert f"seqs {n - 2}-{n} missing" in cut.stdout


def test_replaced_by_an_older_copy_fails_verify_head(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    run_proxy(logs, upstream, upstream_ca, requests=1)
    older = tmp_path / "older.jsonl"
    shutil.copy(logs / "requests.jsonl", older)
    head = printed_head(run_proxy(logs, upstream, upstream_ca, requests=1))
    shutil.copy(older, logs / "requests.jsonl")

    assert verify(logs).returncode == 0
    result = verify_head(logs, head)
    assert result.returncode == 1
    assert f"but the head is seq {head[0]}" in result.stdout and "older copy" in result.stdout


def test_an_emptied_or_deleted_journal_is_an_error(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    head = printed_head(run_proxy(logs, upstream, upstream_ca, requests=1))
    journal = logs / "requests.jsonl"

    journal.write_bytes(b"")
    emptied = verify(logs)
    assert emptied.returncode == 1
    assert "the journal is empty, but its key" in emptied.stdout
    with_head = verify_head(logs, head)
    assert with_head.returncode == 1 and f"is seq {head[0]}: all of it is gone" in with_head.stdout

    journal.unlink()
    deleted = verify(logs)
    assert deleted.returncode == 1 and "the journal is missing" in deleted.stdout

    # The next start will not paper over it with a fresh journal that verifies ...
    refused = refused_start(logs, upstream, upstream_ca)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "empty or missing, but its key was there" in refused.stderr
    assert "--accept-cut-journal" in refused.stderr

    # ... unless told to: then the loss is the journal's first line.
    proxy = run_proxy(logs, upstream, upstream_ca, "--accept-cut-journal", requests=1)
    assert any("WARNING: journal recovered" in line for line in proxy.stderr)
    first = events(logs)[0]
    assert (first["event"], first["action"], first["seq"]) == ("journal", "recovered", 1)
    assert "empty or missing" in first["reason"]
    result = verify(logs)
    assert result.returncode == 0, result.stdout
    assert "requests.jsonl:1: seq 1: journal recovered: the journal is empty" in result.stdout
    assert verify_head(logs, head).returncode == 1  # not the journal the head was of


def test_a_proxy_that_never_wrote_leaves_no_key_behind(tmp_path):
    """A start that fails before its first line must not make the next start think a
    journal was emptied: the key it made goes again."""
    logs = tmp_path / "logs"
    failed = agentlog(
        "proxy", "--logs", logs, "--listen", "127.0.0.1:0", "--capture", "no-such-if0", timeout=30
    )
    assert failed.returncode == 2, failed.stderr
    assert not (logs / "journal.key").exists()
    assert (logs / "requests.jsonl").read_bytes() == b""


@pytest.mark.parametrize("lines_cut", [1, 3], ids=["last-line", "three-lines"])
def test_a_fake_crash_never_reuses_a_seq_and_verify_head_names_the_cut(
    tmp_path, upstream, upstream_ca, lines_cut
):
    logs = tmp_path / "logs"
    old = printed_head(run_proxy(logs, upstream, upstream_ca))
    lines = journal_lines(logs)
    torn = lines[-lines_cut]
    kept = lines[:-lines_cut]
    torn_seq = len(kept) + 1
    # Half a line at the end, as if the proxy had died writing it.
    (logs / "requests.jsonl").write_bytes(b"".join(kept) + torn[: len(torn) // 2])
    before = verify(logs)
    assert before.returncode == 1 and f":{torn_seq}: torn last line" in before.stdout

    proxy = run_proxy(logs, upstream, upstream_ca, requests=1)
    warning = next(line for line in proxy.stderr if "WARNING: journal recovered" in line)
    assert f"{len(torn) // 2} bytes moved to requests.jsonl.torn" in warning
    assert f"seq {torn_seq} skipped" in warning
    assert (logs / "requests.jsonl.torn").read_bytes() == torn[: len(torn) // 2] + b"\n"

    after = events(logs)
    seqs = [e["seq"] for e in after]
    assert seqs == sorted(set(seqs)) and torn_seq not in seqs  # never reused
    recovered = after[len(kept)]
    assert recovered["action"] == "recovered" and recovered["seq"] == torn_seq + 1
    assert (recovered["torn_seq"], recovered["skipped_from"], recovered["skipped_to"]) == (
        torn_seq,
        torn_seq,
        torn_seq,
    )
    result = verify(logs)
    assert result.returncode == 0, result.stdout
    assert f"requests.jsonl:{len(kept) + 1}: seq {torn_seq + 1}: journal recovered" in result.stdout

    held = verify_head(logs, old)
    assert held.returncode == 1
    if lines_cut == 1:  # the head itself was cut in half
        assert f"the head (seq {old[0]}) is not in the journal" in held.stdout
        assert f"this recovery skipped seq {torn_seq}" in held.stdout
    else:  # the cut lines' seqs were taken by new lines: the head's is not the one held
        assert f"seq {old[0]} is not the head you hold" in held.stdout
        assert f"after the recovery at line {len(kept) + 1}" in held.stdout


def test_head_file_is_kept_updated_and_verifies(tmp_path, upstream, upstream_ca):
    logs, head_file = tmp_path / "logs", tmp_path / "kept" / "journal.head"
    head_file.parent.mkdir()
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]), "--head-file", str(head_file))
    key = key_of(logs)

    def current() -> tuple[int, str]:
        lines = journal_lines(logs)
        return len(lines), chain.digest(key, lines[-1])

    for i in range(3):
        assert curl(proxy, f"https://{UPSTREAM}/hello?n={i}").stdout == b"hello"
        proxy.wait_for(lambda es, i=i: responses_since_start(es) == i + 1)
        deadline = time.monotonic() + 5  # updated within about a second
        while parse_head(head_file.read_text()) != current() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert parse_head(head_file.read_text()) == current()
    assert proxy.stop() == 0
    final = parse_head(head_file.read_text())
    assert final == current() == printed_head(proxy)
    assert [p.name for p in head_file.parent.iterdir()] == ["journal.head"]  # no temp left

    result = verify(logs, "--head-file", str(head_file))
    assert result.returncode == 0, result.stdout
    assert "(" + str(head_file) + ") is line" in result.stdout
    (logs / "requests.jsonl").write_bytes(b"".join(journal_lines(logs)[:-1]))
    cut = verify(logs, "--head-file", str(head_file))
    assert cut.returncode == 1 and f"seq {final[0]} missing" in cut.stdout


def test_head_file_stops_a_start_on_a_cut_journal(tmp_path, upstream, upstream_ca):
    logs, head_file = tmp_path / "logs", tmp_path / "journal.head"
    head = printed_head(run_proxy(logs, upstream, upstream_ca, "--head-file", str(head_file)))
    lines = journal_lines(logs)
    kept = lines[:-2]

    # Faking a crash does not help: a crash never takes the head file's line with it.
    (logs / "requests.jsonl").write_bytes(b"".join(kept) + lines[-2][:40])
    refused = refused_start(logs, upstream, upstream_ca, "--head-file", str(head_file))
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert f"ends at seq {len(kept)} but the head file says seq {head[0]}" in refused.stderr
    assert not (logs / "requests.jsonl.torn").exists()  # refused before touching anything

    (logs / "requests.jsonl").write_bytes(b"".join(kept))  # whole lines cut
    refused = refused_start(logs, upstream, upstream_ca, "--head-file", str(head_file))
    assert refused.returncode == 2 and f"seqs {len(kept) + 1}-{head[0]} cut" in refused.stderr

    run_proxy(logs, upstream, upstream_ca, "--head-file", str(head_file), "--accept-cut-journal")
    recovered = events(logs)[len(kept)]
    assert recovered["action"] == "recovered"
    assert (recovered["skipped_from"], recovered["skipped_to"]) == (len(kept) + 1, head[0])
    assert recovered["seq"] == head[0] + 1  # past everything that was written
    now = verify(logs, "--head-file", str(head_file))
    assert now.returncode == 0, now.stdout
    old = verify_head(logs, head)
    assert old.returncode == 1 and f"the head (seq {head[0]}) is not in the journal" in old.stdout


def test_head_file_inside_the_logs_dir_is_refused(tmp_path):
    result = agentlog("proxy", "--logs", tmp_path, "--head-file", tmp_path / "head")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "inside the logs directory" in result.stderr


def test_verify_head_bad_input_is_one_line(tmp_path, upstream, upstream_ca):
    logs = tmp_path / "logs"
    run_proxy(logs, upstream, upstream_ca, requests=0)
    bad = verify(logs, "--head", "12:nothex")
    assert bad.returncode == 2 and "SEQ:HMAC" in bad.stderr
    missing = verify(logs, "--head-file", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no head file" in missing.stderr


# -- chain.verify's rules (pure) ---------------------------------------------

KEY = b"v" * 32


def sealed(events: list[dict]) -> list[bytes]:
    lines, prev = [], b""
    for event in events:
        prev = chain.seal(event, KEY, prev)
        lines.append(prev)
    return lines


def head_of(lines: list[bytes], seq: int) -> tuple[int, str]:
    line = next(x for x in lines if json.loads(x)["seq"] == seq)
    return seq, chain.digest(KEY, line)


def recovered(seq: int, first: int | None, last: int | None) -> dict:
    return {
        "event": "journal",
        "action": "recovered",
        "seq": seq,
        "reason": "test",
        "skipped_from": first,
        "skipped_to": last,
    }


@st.composite
def journals(draw) -> list[dict]:
    """Events numbered as the writer numbers them: each jump declared by a recovery."""
    events, seq = [], 0
    for _ in range(draw(st.integers(0, 12))):
        skip = draw(st.integers(0, 3)) if draw(st.booleans()) else None
        if skip is None:
            seq += 1
            events.append({"event": "request", "seq": seq})
        else:
            gap = (seq + 1, seq + skip) if skip else (None, None)
            seq += skip + 1
            events.append(recovered(seq, *gap))
    return events


@given(journals())
def test_gaps_declared_by_recoveries_verify(events):
    verdict = chain.verify(sealed(events), KEY)
    assert verdict.ok, verdict.reason
    assert len(verdict.recoveries) == sum(e["event"] == "journal" for e in events)
    assert verdict.last_seq == (events[-1]["seq"] if events else 0)


@given(journals(), st.data())
def test_any_undeclared_or_misdeclared_gap_fails(events, data):
    if not events:
        return
    i = data.draw(st.integers(0, len(events) - 1))
    event = dict(events[i])
    wrong = data.draw(
        st.sampled_from(
            ["bump", "undeclare", "misdeclare"] if event["event"] == "journal" else ["bump"]
        )
    )
    if wrong == "bump":  # a seq that skips without a recovery saying so (or one more than it says)
        shift = {**event, "seq": event["seq"] + 1}
        events = [*events[:i], shift, *({**e, "seq": e["seq"] + 1} for e in events[i + 1 :])]
    elif wrong == "undeclare":
        events = [*events[:i], {**event, "event": "request"}, *events[i + 1 :]]
        if event["skipped_from"] is None:
            return  # a recovery with no gap is an ordinary line's numbering
    else:
        first = event["skipped_from"]
        events = [
            *events[:i],
            {**event, "skipped_from": (first or event["seq"]) - 1},
            *events[i + 1 :],
        ]
    verdict = chain.verify(sealed(events), KEY)
    assert not verdict.ok and verdict.bad_line == i + 1


def test_first_line_must_be_seq_1_unless_a_recovery_declares_from_1():
    assert not chain.verify(sealed([{"event": "request", "seq": 2}]), KEY).ok
    assert chain.verify(sealed([recovered(4, 1, 3)]), KEY).ok
    assert not chain.verify(sealed([recovered(4, 2, 3)]), KEY).ok


@given(journals(), st.data())
def test_verify_head_holds_every_line_and_misses_any_cut(events, data):
    lines = sealed(events)
    for number, line in enumerate(lines, 1):
        verdict = chain.verify(lines, KEY, head_of(lines, json.loads(line)["seq"]))
        assert verdict.ok and verdict.head_line == number
    assert chain.verify(lines, KEY, (0, chain.digest(KEY, b""))).head_line == 0
    if not lines:
        return
    keep = data.draw(st.integers(0, len(lines) - 1))
    head = head_of(lines, json.loads(lines[-1])["seq"])
    cut = chain.verify(lines[:keep], KEY, head)
    assert not cut.ok and cut.bad_line == keep + 1
    last = json.loads(lines[keep - 1])["seq"] if keep else 0
    assert f"ends at seq {last}, but the head is seq {head[0]}" in cut.reason


def test_verify_head_with_another_line_at_that_seq_fails_there():
    lines = sealed([{"event": "request", "seq": s} for s in range(1, 6)])
    other = sealed([{"event": "request", "seq": s, "x": 1} for s in range(1, 6)])
    verdict = chain.verify(lines, KEY, head_of(other, 3))
    assert not verdict.ok and verdict.bad_line == 3 and "not the head you hold" in verdict.reason


def test_verify_head_inside_a_declared_gap_names_the_recovery():
    lines = sealed([{"event": "request", "seq": 1}, recovered(4, 2, 3), {"event": "x", "seq": 5}])
    verdict = chain.verify(lines, KEY, (3, "0" * 64))
    assert verdict.bad_line == 2 and "this recovery skipped seqs 2-3" in verdict.reason


# -- recovery at start (pure, and the writer on a file) -----------------------


@given(st.integers(0, 1000), st.integers(0, 1000))
def test_a_torn_line_never_gives_its_seq_again(last, seq):
    line = chain.seal({"v": 1, "event": "request", "id": "01ABC", "seq": seq}, KEY, b"")
    seq_read_by = line.index(b'"seq":') + len(f'"seq":{seq},')
    for cut in range(len(line)):
        torn_seq = recovery.torn_seq(line[:cut], last)
        assert torn_seq in (None, seq)
        if seq > last and cut >= seq_read_by:
            assert torn_seq == seq
        plan = recovery.plan(recovery.Found(last, torn=True, torn_seq=torn_seq))
        assert plan.skipped is not None and plan.skipped[0] == last + 1
        assert plan.next_seq is not None and plan.next_seq > max(last + 1, torn_seq or 0)
        assert not plan.cut


def test_agent_text_in_a_torn_line_cannot_pose_as_its_seq():
    torn = b'{"v":1,"event":"request","id":"x","seq":null,"path":"/?\\"seq\\":999999,"seq":9'
    assert recovery.torn_seq(torn, 0) is None
    assert recovery.torn_seq(b'{"v":1,"event":"request","id":"A","seq":42,"se', 0) == 42
    assert recovery.torn_seq(b'{"v":1,"event":"request","id":"A","seq":42,"se', 42) is None


@pytest.mark.parametrize(
    ("found", "recorded", "cut", "skipped"),
    [
        (recovery.Found(5), False, False, None),
        (recovery.Found(5, torn=True), True, False, (6, 6)),
        (recovery.Found(5, torn=True, torn_seq=9), True, False, (6, 9)),
        (recovery.Found(0, existed=True), True, True, None),
        (recovery.Found(0, torn=True, existed=True), True, False, (1, 1)),
        (recovery.Found(5, known_head=(9, "m"), holds_known_head=False), True, True, (6, 9)),
        (
            recovery.Found(5, True, 7, known_head=(9, "m"), holds_known_head=False),
            True,
            True,
            (6, 9),
        ),
        (recovery.Found(9, known_head=(7, "m"), holds_known_head=False), True, True, None),
        (recovery.Found(9, known_head=(7, "m")), False, False, None),
    ],
)
def test_recovery_plan(found, recorded, cut, skipped):
    plan = recovery.plan(found)
    assert (bool(plan.problems), plan.cut, plan.skipped) == (recorded, cut, skipped)


def writer_on(root: Path, data: bytes) -> tuple[LogsDir, JournalWriter]:
    logs = LogsDir(root)
    logs.prepare()
    logs.journal.write_bytes(data)
    return logs, JournalWriter(logs, KEY, Redactor())


def test_writer_refuses_a_journal_short_of_the_known_head_and_touches_nothing(tmp_path):
    lines = sealed([{"event": "request", "seq": s} for s in range(1, 6)])
    data = b"".join(lines[:3]) + lines[3][:20]
    logs, writer = writer_on(tmp_path, data)
    with pytest.raises(JournalCutError, match="ends at seq 3 but the head file says seq 5"):
        writer.recover("S", known_head=head_of(lines, 5))
    writer.close()
    assert logs.journal.read_bytes() == data and not logs.torn.exists()

    logs, writer = writer_on(tmp_path, b"".join(lines))
    assert writer.recover("S", known_head=head_of(lines, 4)) is None  # it grew past: fine
    writer.close()


def test_writer_accepting_a_cut_skips_past_the_known_head(tmp_path):
    lines = sealed([{"event": "request", "seq": s} for s in range(1, 6)])
    logs, writer = writer_on(tmp_path, b"".join(lines[:2]))
    event = writer.recover("S", known_head=head_of(lines, 5), accept_cut=True)
    writer.start()
    writer.append({"event": "request"})
    writer.close()
    assert event is not None and event["session"] == "S"
    written = [json.loads(x) for x in logs.journal.read_bytes().splitlines()]
    assert [e["seq"] for e in written] == [1, 2, 6, 7]
    assert chain.verify(logs.journal.read_bytes().splitlines(keepends=True), KEY).ok


# -- the head file -------------------------------------------------------------


@given(st.integers(0, 10**15 - 1), st.binary(min_size=32, max_size=32))
def test_head_round_trips_in_both_spellings(seq, raw):
    head = (seq, raw.hex())
    assert parse_head(format_head(head)) == head
    assert parse_head(f"seq={seq} hmac={raw.hex()}\n") == head


@pytest.mark.parametrize(
    "text", ["", "12", "12:", "x:" + "a" * 64, "1:" + "A" * 64, "1:" + "a" * 63]
)
def test_bad_heads_are_config_errors(text):
    with pytest.raises(ConfigError):
        parse_head(text)


def test_head_file_never_goes_back(tmp_path):
    path = tmp_path / "head"
    head_file = HeadFile(path)
    assert head_file.read() is None
    head_file.write((5, "a" * 64))
    head_file.write((4, "b" * 64))  # a slower writer's older head
    assert head_file.read() == (5, "a" * 64)
    head_file.write((6, "c" * 64))
    assert path.read_text() == "6:" + "c" * 64 + "\n"
    with pytest.raises(ConfigError, match="inside the logs directory"):
        HeadFile(tmp_path / "logs" / "x" / "head", tmp_path / "logs")
