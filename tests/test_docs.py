"""The docs' command lines are agentlog's: each one in a code block of README.md or
docs/*.md parses with the real parser (never run), so a renamed option breaks the
build instead of the docs. A synopsis (`agentlog proxy --logs DIR [--listen HOST:PORT]`)
may name only options its command has."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentlog.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# `agentlog ...`, `./run ...` (this checkout's agentlog), after `sudo` or VAR=value.
_COMMAND = re.compile(
    r"^(?:\w+=\S*\s+)*(?:sudo\s+(?:-\S+\s+)*)?(?:env\s+)?(?:\w+=\S*\s+)*(?:agentlog|\./run)\s"
)
_ASSIGNMENT = re.compile(r"^\w+=")
_SHELL_OPERATORS = {"|", "||", "&", "&&", ";", ">", ">>", "<", "2>", "("}


@dataclass(frozen=True)
class CommandLine:
    line: int  # where it starts in its file
    text: str
    argv: list[str]  # what agentlog would be given
    synopsis: bool  # a usage line with [OPTIONAL] parts, not a command to type


def code_lines(markdown: str) -> Iterator[tuple[int, str]]:
    """The lines inside fenced code blocks, a `\\` continuation or a synopsis's
    indented `[...]` continuation joined to the line it continues."""
    fence: str | None = None
    pending: tuple[int, str] | None = None
    for number, line in enumerate(markdown.splitlines(), start=1):
        marker = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None:
            if marker:
                fence = marker.group(1)
            continue
        if marker and marker.group(1).startswith(fence) and not line.strip(fence[0]).strip():
            if pending:
                yield pending
            fence, pending = None, None
            continue
        if pending and pending[1].endswith("\\"):
            pending = (pending[0], pending[1][:-1].rstrip() + " " + line.strip())
        elif pending and line[:1].isspace() and line.lstrip().startswith("["):
            pending = (pending[0], pending[1] + " " + line.strip())
        else:
            if pending:
                yield pending
            pending = (number, line.strip())


def command_lines(markdown: str) -> Iterator[CommandLine]:
    for number, text in code_lines(markdown):
        if not _COMMAND.match(text):
            continue
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for word in lexer:
            if word in _SHELL_OPERATORS:
                break
            words.append(word)
        while words and (words[0] in ("sudo", "env") or _ASSIGNMENT.match(words[0])):
            words.pop(0)
            while words and words[0].startswith("-") and words[0] != "--":
                words.pop(0)  # sudo's own options
        synopsis = any(w.startswith("[") for w in words)
        yield CommandLine(number, text, words[1:], synopsis)


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def problem(command: CommandLine) -> str | None:
    """Why agentlog's parser would refuse this line, or None."""
    parser = build_parser()
    if command.synopsis:
        sub = _subcommand(parser, command.argv[0]) if command.argv else None
        if sub is None:
            return f"no such command: {command.argv[:1]}"
        flags = re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", " ".join(command.argv))
        unknown = [f for f in flags if f not in sub._option_string_actions]
        return f"agentlog {command.argv[0]} has no {', '.join(unknown)}" if unknown else None
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            args = parser.parse_args(command.argv)
    except SystemExit as e:
        return None if e.code == 0 else stderr.getvalue().strip() or f"exit {e.code}"
    return None if callable(getattr(args, "run", None)) else "no command chosen"


def doc_problems(name: str, markdown: str) -> list[str]:
    found = []
    for command in command_lines(markdown):
        if why := problem(command):
            found.append(f"{name}:{command.line}: {command.text}\n    {why}")
    return found


@pytest.fixture(autouse=True)
def no_agentlog_variables(monkeypatch):
    """The parser takes defaults from AGENTLOG_* variables: the docs' lines must parse alone."""
    for name in [n for n in os.environ if n.startswith("AGENTLOG_")]:
        monkeypatch.delenv(name)


def test_every_agentlog_command_line_in_the_docs_parses():
    found = []
    for path in DOCS:
        found += doc_problems(str(path.relative_to(ROOT)), path.read_text())
    assert not found, "\n".join(found)


def test_the_docs_have_command_lines_to_check():
    """Guards the extraction itself: if it found nothing, the test above would pass empty."""
    readme = list(command_lines((ROOT / "README.md").read_text()))
    assert len([c for c in readme if not c.synopsis]) >= 15
    assert {c.argv[0] for c in readme if c.synopsis} >= {"proxy", "run", "up", "ui"}
    agents = list(command_lines((ROOT / "docs" / "agents.md").read_text()))
    assert sum(c.argv[:1] == ["run"] for c in agents) >= 5


SAMPLE = """\
Prose mentions `agentlog run --alow x` outside a code block: not checked.

```bash
sudo agentlog run --logs /tmp/l --allow api.anthropic.com -- claude -p "hi"   # fine
sudo agentlog run --alow api.anthropic.com -- claude
./run proxy --body-cap lots
AGENTLOG_ALLOW=x.test agentlog frobnicate --logs l
agentlog verify --logs ./logs \\
    --head 41:9f2c...
tcpdump -nr logs/capture.pcap                      # not agentlog's
agentlog ls --logs ./logs | head -n 3 > out.txt     # the pipe is the shell's
```

```
agentlog proxy --logs DIR [--listen HOST:PORT]
               [--bodycap SIZE]
agentlog run [--logs DIR] [--as-root] [proxy options] -- CMD [ARGS...]
```
"""


def test_a_renamed_option_a_bad_value_or_an_unknown_command_is_caught():
    found = doc_problems("sample.md", SAMPLE)
    assert [p.split(":", 2)[1] for p in found] == ["5", "6", "7", "8", "15"]
    assert "unrecognized arguments: --alow" in found[0]
    assert "--body-cap" in found[1]
    assert "frobnicate" in found[2]
    assert "--head" in found[3]  # the continued line, joined
    assert "agentlog proxy has no --bodycap" in found[4]  # the synopsis's second line


def test_what_the_lines_become():
    lines = list(command_lines(SAMPLE))
    assert lines[0].argv == [
        *("run", "--logs", "/tmp/l", "--allow", "api.anthropic.com"),
        *("--", "claude", "-p", "hi"),
    ]
    assert lines[3].argv == ["frobnicate", "--logs", "l"]
    assert lines[5].argv == ["ls", "--logs", "./logs"]
    assert [line.synopsis for line in lines] == [False] * 6 + [True, True]
