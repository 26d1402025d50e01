"""The list's filters as SQL over index.db (pure: values in, SQL text and parameters out)."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from agentlog.ui.rows import ROW_FIELDS

COLUMNS = ", ".join(f"e.{name}" for name in ROW_FIELDS)
_STATUS = re.compile(r"([1-5])xx|([1-5][0-9][0-9])")
_WORD = re.compile(r"[^\W_]")  # what unicode61 keeps as a token character


class BadFilter(ValueError):
    """A filter value that means nothing; the message says which."""


@dataclass(frozen=True)
class Filters:
    domain: str | None = None
    method: tuple[str, ...] = ()
    status: tuple[str, ...] = ()
    kind: tuple[str, ...] = ()
    session: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    changed_after: int | None = None


def split(value: str | None) -> tuple[str, ...]:
    """A comma-separated parameter's items."""
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def journal_time(moment: datetime) -> str:
    """A time as the journal writes it, so text order is time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def glob(pattern: str) -> str:
    """A domain glob (only * and ?) as an SQLite GLOB: `[` is literal here."""
    return pattern.lower().replace("[", "[[]")


def fts_query(q: str | None) -> str | None:
    """Each whitespace-separated term as a quoted FTS5 phrase matched as a prefix,
    all required; None when no term has a word character (no text filter)."""
    # FTS5 reads the query as a C string: a NUL would end it inside a quoted term.
    terms = [t for t in (q or "").replace("\0", " ").split() if _WORD.search(t)]
    if not terms:
        return None
    return " AND ".join('"' + t.replace('"', '""') + '"*' for t in terms)


def _status(items: tuple[str, ...]) -> tuple[str, list[object]]:
    parts: list[str] = []
    params: list[object] = []
    for item in items:
        m = _STATUS.fullmatch(item.lower())
        if not m:
            raise BadFilter(f"status {item!r}: give 2xx..5xx or a code such as 404")
        if m.group(1):
            parts.append("e.status BETWEEN ? AND ?")
            params += [int(m.group(1)) * 100, int(m.group(1)) * 100 + 99]
        else:
            parts.append("e.status = ?")
            params.append(int(m.group(2)))
    return "(" + " OR ".join(parts) + ")", params


def _any_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join('?' * len(values))})"


def where(f: Filters) -> tuple[list[str], list[object]]:
    """WHERE clauses over `exchanges e` (ANDed) and their parameters; `q` is apart."""
    clauses: list[str] = []
    params: list[object] = []
    if f.domain and not any(c in f.domain for c in "*?["):
        # Equality walks the domain index newest first; a GLOB range would sort.
        clauses.append("e.domain = ?")
        params.append(f.domain.lower())
    elif f.domain:
        clauses.append("e.domain GLOB ?")
        params.append(glob(f.domain))
    if f.method:
        clauses.append(_any_of("e.method", f.method))
        params += [m.upper() for m in f.method]
    if f.status:
        clause, values = _status(f.status)
        clauses.append(clause)
        params += values
    if f.kind:
        clauses.append(_any_of("e.kind", f.kind))
        params += list(f.kind)
    if f.session:
        clauses.append("e.session = ?")
        params.append(f.session)
    if f.since:
        clauses.append("e.timestamp >= ?")
        params.append(journal_time(f.since))
    if f.until:
        clauses.append("e.timestamp < ?")
        params.append(journal_time(f.until))
    if f.changed_after is not None:
        clauses.append("e.updated_seq > ?")
        params.append(f.changed_after)
    return clauses, params


def page(
    f: Filters, before: int | None, limit: int, columns: str = COLUMNS
) -> tuple[str, list[object]]:
    """Newest first, `limit` rows below the cursor `before` (an opening seq)."""
    clauses, params = where(f)
    match = fts_query(f.q)
    if before is not None:
        clauses.append("e.seq < ?")
        params.append(before)
    if match is None:
        sql = f"SELECT {columns} FROM exchanges e"
        order = "e.seq"
    else:
        # Driven by FTS5, which walks its rowids (= seq) newest first and stops at LIMIT.
        sql = f"SELECT {columns} FROM search JOIN exchanges e ON e.seq = search.rowid"
        clauses.insert(0, "search MATCH ?")
        params.insert(0, match)
        order = "search.rowid"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return f"{sql} ORDER BY {order} DESC LIMIT ?", [*params, limit]


def changed(f: Filters, after: int, upto: int) -> tuple[str, list[object]]:
    """Rows whose last change is in (after, upto], oldest change first; `q` is checked
    per row by the caller (`matches`)."""
    clauses, params = where(f)
    clauses.append("e.updated_seq > ? AND e.updated_seq <= ?")
    params += [after, upto]
    return (
        f"SELECT {COLUMNS} FROM exchanges e WHERE {' AND '.join(clauses)} ORDER BY e.updated_seq",
        params,
    )


MATCHES = "SELECT 1 FROM search WHERE search MATCH ? AND rowid = ?"
