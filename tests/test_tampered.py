"""A tampered logs directory is hostile input to the read commands too.

Whoever can write the logs directory can append any line to the journal, swap a
body for a symlink to a secret, a FIFO or a device, or plant a capture file.
Every read command then either goes on past a malformed journal line (with one
warning line: the reader of a journal wants the rest of it) or refuses a file
that is not what the proxy writes (one line, exit 2). Never a traceback, never
a hang, never another file's content.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.capture import slicer
from agentlog.commands.reading import SkippedLines
from agentlog.errors import UserError
from agentlog.formats.exchange import with_bodies
from agentlog.formats.har import har
from agentlog.formats.text import (
    event_line,
    printable,
    printable_json,
    printable_json_text,
    summary,
)
from agentlog.journal import chain, reader, schema
from agentlog.journal.reader import exchanges, find
from agentlog.logsdir import LogsDir
from tests.conftest import UPSTREAM, proxy_args
from tests.harness import agentlog, curl, start_proxy
from tests.samples import assert_terminal_safe

pytestmark = pytest.mark.timeout(120)

SECRET = "TOP SECRET: the reader's own file"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, upstream, upstream_ca) -> Path:
    """A logs directory the real proxy wrote: two exchanges, one with bodies."""
    logs = tmp_path_factory.mktemp("recorded") / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    try:
        curl(proxy, f"https://{UPSTREAM}/hello")
        curl(proxy, f"https://{UPSTREAM}/echo", "-d", "x=1")
        proxy.wait_for(lambda es: sum(e["event"] == "response" for e in es) == 2)
    finally:
        assert proxy.stop() == 0
    return logs


@pytest.fixture
def logs(recorded, tmp_path) -> Path:
    """A copy of the recorded logs directory, to tamper with."""
    copy = tmp_path / "logs"
    shutil.copytree(recorded, copy, symlinks=True)
    return copy


def events(logs: Path) -> list[dict]:
    return [json.loads(line) for line in (logs / "requests.jsonl").read_bytes().splitlines()]


def rewrite(logs: Path, changed: list[dict]) -> None:
    """The journal, rewritten by someone without the key (verify would tell)."""
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in changed)
    (logs / "requests.jsonl").write_text(text)


def echo_exchange(logs: Path) -> tuple[dict, dict]:
    request = next(e for e in events(logs) if e.get("path") == "/echo")
    response = next(
        e for e in events(logs) if e["event"] == "response" and e["id"] == request["id"]
    )
    return request, response


def empty_pcap(path: Path) -> None:
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))


def assert_refused(result: subprocess.CompletedProcess, *words: str, status: int = 2) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agentlog: error: "), result.stderr
    assert result.returncode == status, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def cli(*args: object) -> subprocess.CompletedProcess:
    return agentlog(*args, timeout=30)  # a FIFO that blocks a reader fails the test here


# -- files the records point at ----------------------------------------------------


def plant(path: Path, kind: str, tmp_path: Path) -> None:
    """Replace the body file at `path` with something the proxy never writes."""
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    path.unlink()
    if kind == "symlink":
        path.symlink_to(secret)
    elif kind == "symlink to /dev/zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # what /dev/zero is
    elif kind == "altered":
        path.write_text(SECRET)
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(4 << 30)  # sparse: costs no disk, would cost 4 GiB of memory


@pytest.mark.parametrize(
    ("kind", "word"),
    [
        ("symlink", "symlink"),
        ("symlink to /dev/zero", "symlink"),
        ("fifo", "not a regular file"),
        ("device", "not a regular file"),
        ("altered", "does not match"),
        ("huge", "larger than"),
    ],
)
def test_show_bodies_and_har_refuse_a_body_that_is_not_one(logs, tmp_path, kind, word):
    request, _ = echo_exchange(logs)
    if kind == "device" and os.geteuid() != 0:
        pytest.skip("mknod needs root")
    plant(logs / request["request_body"], kind, tmp_path)

    shown = cli("show", request["id"], "--bodies", "--logs", logs)
    assert_refused(shown, word)
    assert SECRET not in shown.stdout
    har = tmp_path / "out.har"
    exported = cli("export", "--har", "-o", har, "--logs", logs)
    assert_refused(exported, word)
    assert not har.exists()
    assert cli("show", request["id"], "--logs", logs).returncode == 0  # no body read: shown


@pytest.mark.parametrize("kind", ["fifo", "symlink to /dev/zero", "directory"])
def test_a_journal_that_is_not_a_file_is_refused(logs, tmp_path, kind):
    journal = logs / "requests.jsonl"
    journal.unlink()
    if kind == "fifo":
        os.mkfifo(journal)
    elif kind == "directory":
        journal.mkdir()
    else:
        journal.symlink_to("/dev/zero")
    for command in (
        ["ls"],
        ["ls", "--json"],
        ["show", "01"],
        ["tail", "--no-follow"],
        ["tail", "--json", "--no-follow"],
        ["export", "--har", "-o", tmp_path / "x.har"],
        ["pcap", "01", "-o", tmp_path / "x.pcapng"],
        ["verify"],
    ):
        assert_refused(cli(*command, "--logs", logs), "requests.jsonl")


def test_pcap_with_a_closing_event_without_timestamp(logs, tmp_path):
    """The reported crash: pcap took every closing event's time as given."""
    capture = "capture_20260101_000000.pcap"
    empty_pcap(logs / capture)
    request, response = echo_exchange(logs)
    changed = []
    for e in events(logs):
        if e["id"] == request["id"]:
            if e["event"] == "request":
                e["pcap_file"] = capture
            else:
                e.pop("timestamp", None)
        changed.append(e)
    rewrite(logs, changed)
    out = tmp_path / "one.pcapng"
    result = cli("pcap", request["id"], "-o", out, "--logs", logs)
    assert "Traceback" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert out.exists()


def point_at_capture(logs: Path, capture: str) -> dict:
    """The echo request, rewritten to name `capture` as the file holding its start."""
    request, _ = echo_exchange(logs)
    journal = events(logs)
    for e in journal:
        if e["id"] == request["id"] and e["event"] == "request":
            e["pcap_file"] = capture
    rewrite(logs, journal)
    return request


def test_pcap_refuses_a_planted_capture_symlink(logs, tmp_path):
    elsewhere = tmp_path / "elsewhere.pcap"
    empty_pcap(elsewhere)
    (logs / "capture_20260101_000000.pcap").symlink_to(elsewhere)
    request = point_at_capture(logs, "capture_20260101_000000.pcap")
    out = tmp_path / "one.pcapng"
    assert_refused(cli("pcap", request["id"], "-o", out, "--logs", logs), "symlink")
    assert not out.exists()


def test_pcap_refuses_a_keys_log_that_is_a_fifo(logs, tmp_path):
    empty_pcap(logs / "capture_20260101_000000.pcap")
    (logs / "keys.log").unlink()
    os.mkfifo(logs / "keys.log")
    request = point_at_capture(logs, "capture_20260101_000000.pcap")
    result = cli("pcap", request["id"], "-o", tmp_path / "one.pcapng", "--logs", logs)
    assert_refused(result, "keys.log", "not a regular file")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1 or host 10.9.9.9:80",  # the filter would select other traffic
        "[fe80::1%lo or tcp]:80",  # a scope id is free text
        "localhost:80",  # tcpdump would look the name up
        "127.0.0.1:99999",
        "127.0.0.1:\u00b2",  # a digit to str.isdigit, not to int()
        "[::1:80",
        "::1:80",
    ],
)
def test_pcap_refuses_a_record_whose_address_is_not_one(logs, tmp_path, address):
    request, _ = echo_exchange(logs)
    journal = events(logs)
    for e in journal:
        if e["id"] == request["id"] and e["event"] == "request":
            e["client"] = address
    rewrite(logs, journal)
    out = tmp_path / "one.pcapng"
    assert_refused(cli("pcap", request["id"], "-o", out, "--logs", logs), "client")
    assert not out.exists()


# -- malformed journal lines: skipped, with one warning -----------------------------

MALFORMED = [
    b"not json at all",
    b"[1, 2, 3]",
    b'"a string"',
    b"null",
    b"{}",
    b'{"event": "request"}',  # no id
    b'{"event": null, "id": "01X"}',
    b'{"event": "request", "id": ["01X"]}',
    b'{"event": "request", "id": "01BAD", "port": "443", "scheme": "https"}',
    b'{"event": "request", "id": "01BAD", "headers": ["x"]}',
    b'{"event": "request", "id": "01BAD", "headers": {"a": 1}}',
    b'{"event": "request", "id": "01BAD", "path": null}',
    b'{"event": "request", "id": "01BAD", "response": "x"}',  # where merging nests
    b'{"event": "request", "id": "01BAD", "request_body": "../../etc/passwd"}',
    b'{"event": "request", "id": "01BAD", "pcap_file": "../capture_20260101_000000.pcap"}',
    b'{"event": "request", "id": "01BAD", "port": true}',
    b'{"event": "request", "id": "01BAD", "port": 1e999}',
    b'{"event": "request", "id": "01BAD", "port": NaN}',
    b'{"event": "request", "id": "01BAD", "port": ' + b"9" * 5000 + b"}",
    b'{"event": "request", "id": "01BAD", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"event": "request", "id": "01BAD", "x": ' + b"[" * 100 + b"]" * 100 + b"}",
    b'{"event": "response", "id": "01BAD", "ttfb_ms": -1e308, "duration_ms": 1e308}',
    b'{"event": "request", "id": "01BAD", "path": "\xff\xfe invalid utf-8"}',
    b'\xef\xbb\xbf{"event": "journal", "id": "BOM"}',
    b'{"event": "journal", "id": "J", "action": "start", "recovered_torn_bytes": "3"}',
]


def test_every_read_command_goes_on_past_malformed_lines(logs, tmp_path):
    original = events(logs)
    request, response = echo_exchange(logs)
    hijack = {**response, "status": "200", "headers": None}  # aimed at a real exchange
    with (logs / "requests.jsonl").open("ab") as f:
        for line in [*MALFORMED, json.dumps(hijack).encode()]:
            f.write(line + b"\n")
    skipped = len(MALFORMED) + 1

    def read(*command: object) -> subprocess.CompletedProcess:
        result = cli(*command, "--logs", logs)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.returncode == 0, result.stderr
        return result

    for command in (["ls"], ["ls", "--json"], ["show", request["id"], "--bodies"]):
        (warning,) = read(*command).stderr.splitlines()
        assert f"skipped {skipped} malformed line(s)" in warning
        assert f"line {len(original) + 1}: not JSON" in warning
    listed = read("ls", "--json").stdout.splitlines()
    assert len(listed) == 2  # the two real exchanges, nothing else
    shown = json.loads(read("show", request["id"], "--bodies").stdout)
    assert shown["response"]["status"] == 200 and shown["request_body_text"] == "x=1"
    read("export", "--har", "-o", tmp_path / "x.har")
    assert len(json.loads((tmp_path / "x.har").read_text())["log"]["entries"]) == 2

    # tail shows the journal line by line: a malformed line as it is, escaped
    every = len(original) + skipped
    assert len(read("tail", "-n", "100", "--no-follow").stdout.splitlines()) == every
    assert len(read("tail", "--json", "-n", "100", "--no-follow").stdout.splitlines()) == every

    pcap = cli("pcap", request["id"], "-o", tmp_path / "x.pcapng", "--logs", logs)
    warning, error = pcap.stderr.splitlines()  # the run had no --capture
    assert "skipped" in warning and "no capture" in error and pcap.returncode == 1
    verified = cli("verify", "--logs", logs)
    assert verified.returncode == 1 and "Traceback" not in verified.stderr
    assert f":{len(original) + 1}: not a sealed journal line" in verified.stdout


# -- any JSON value in any field: the read side's core raises nothing but UserError ----

KINDS = ["request"] * 4 + ["response"] * 2 + ["tcp", "tcp_end", "error", "blocked"]
KINDS += ["websocket", "tls_failed", "capture", "journal", "dns", ""]
FIELDS = sorted(
    {name for kind in schema._SCHEMAS.values() for name in kind} | {"x", *schema._CLOSING}
)
IDS = ["01A", "01B", "01a"]
CAPTURES = ["capture_20260101_000000.pcap", "capture_20260101_010000.pcap"]
ADDRESSES = [
    "127.0.0.1:80",
    "[::1]:443",
    "[::ffff:10.0.0.1]:5",
    "[fe80::1%x y]:1",
    "1.2.3.4 or tcp:1",
]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, list[str]]:
    """A logs directory whose bodies are every kind of file, and the refs naming them."""
    root = tmp_path_factory.mktemp("planted")
    refs = []
    for i, kind in enumerate(["good", "symlink", "fifo", "altered", "missing"]):
        data = f"body {i} \x9b\u202e".encode()
        name = hashlib.sha256(data).hexdigest()
        path = root / "bodies" / name[:2] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "good":
            path.write_bytes(data)
        elif kind == "symlink":
            path.symlink_to("/etc/hostname")
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "altered":
            path.write_bytes(data + b"!")
        refs.append(f"bodies/{name[:2]}/{name}")
    empty_pcap(root / CAPTURES[0])
    (root / CAPTURES[1]).symlink_to(root / CAPTURES[0])
    return root, refs


any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
scalars = (
    st.none()
    | st.booleans()
    | st.sampled_from(IDS + CAPTURES + ADDRESSES + ["https", "GET", "2026-01-01T00:00:00Z", ""])
    | st.integers(-(1 << 70), 1 << 70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(any_char, max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(any_char), inner),
    max_leaves=8,
)


def typed(kind: str, name: str, refs: list[str]) -> st.SearchStrategy:
    """A value of the type `kind` declares for `name` (hostile where a string goes)."""
    hint = schema._SCHEMAS.get(kind, schema._BASE).get(name)
    if name.endswith("_body"):
        return st.none() | st.sampled_from(refs)
    if name == "pcap_file":
        return st.none() | st.sampled_from(CAPTURES)
    if name in ("client", "agent_dst", "upstream_src", "upstream_dst"):
        return st.none() | st.sampled_from(ADDRESSES) | st.text(any_char, max_size=30)
    if hint is None:
        return values
    return st.from_type(hint).map(lambda v: v if not isinstance(v, str) else v[:40])


@st.composite
def lines(draw, refs: list[str]) -> bytes:
    """One journal line: mostly a well-formed event of some kind, often with a
    field of any JSON value, sometimes no JSON at all."""
    kind = draw(st.sampled_from(KINDS))
    event = {"event": kind, "id": draw(st.sampled_from(IDS))}
    declared = sorted(schema._SCHEMAS.get(kind, schema._BASE))
    for name in draw(st.lists(st.sampled_from(declared), max_size=12, unique=True)):
        event[name] = draw(typed(kind, name, refs))
    for name in draw(st.lists(st.sampled_from(FIELDS + ["event", "id"]), max_size=1)):
        event[name] = draw(values)  # the wrong type, a list, a huge number...
    text = json.dumps(event, ensure_ascii=draw(st.booleans()))
    data = text.encode("utf-8", "surrogatepass")
    garble = draw(st.integers(0, 9))
    return [data[: len(data) // 2], data + b"\xff", b"[" + data].pop(garble) if garble < 3 else data


def per_exchange(logs: Path, x: dict) -> None:
    """show --bodies, export --har and pcap's part before tcpdump, for one exchange."""
    for attempt in (
        lambda: printable_json(with_bodies(logs, x), indent=2),
        lambda: printable_json(har(logs, [x] if x["event"] == "request" else []), indent=1),
        lambda: slicer.bpf_filter(slicer.legs_of(x)),
        lambda: slicer.files_between(
            LogsDir(logs), x.get("pcap_file") or "", slicer._last_timestamp(x)
        ),
    ):
        with contextlib.suppress(UserError):
            attempt()


def read_side(logs: Path, journal: Path) -> None:
    """What ls, show, tail (--json), export --har, pcap and verify do with a journal,
    short of running tools on the packets."""
    skipped = SkippedLines(journal)
    merged = exchanges(reader.events(journal, skipped))
    skipped.warn()
    for x in merged.values():
        summary(x)
        printable_json(x)
        find(merged, x["id"][:2])
        per_exchange(logs, x)
    for line in reader.lines(journal):
        text = line.decode("utf-8", "replace").rstrip("\n")
        printable_json_text(text)
        try:
            event_line(reader.parse_event(line))
        except reader.MalformedEvent:
            printable(text)
    chain.verify(reader.lines(journal), b"k" * 32)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_values_in_any_fields_raise_nothing_but_user_errors(planted, data):
    root, refs = planted
    journal = root / "requests.jsonl"
    journal.write_bytes(b"".join(line + b"\n" for line in data.draw(st.lists(lines(refs)))))
    warnings = io.StringIO()
    with contextlib.redirect_stderr(warnings):
        read_side(root, journal)
    assert_terminal_safe(warnings.getvalue())
