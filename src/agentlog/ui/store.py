"""What the API reads: index.db (one read connection per thread) and the logs directory."""

import json
import os
import sqlite3
import threading
from functools import lru_cache
from pathlib import Path

from agentlog.capture.pcapfile import GLOBAL_HEADER_LEN, RECORD_HEADER_LEN, Format, PcapError
from agentlog.conversation import api_of
from agentlog.journal.reader import read_body
from agentlog.logsdir import LogsDir
from agentlog.timefmt import rfc3339
from agentlog.ui import query
from agentlog.ui.batch import merged
from agentlog.ui.index import Indexer
from agentlog.ui.query import Filters
from agentlog.ui.rows import ROW_FIELDS, body_parts, body_view, closing


class Store:
    def __init__(self, logs: LogsDir, indexer: Indexer) -> None:
        self.logs, self.indexer = logs, indexer
        self._local = threading.local()

    def db(self) -> sqlite3.Connection:
        """This thread's read connection (opened again after the index was rebuilt)."""
        local = self._local
        if getattr(local, "epoch", None) != self.indexer.epoch:
            if getattr(local, "db", None) is not None:
                local.db.close()
            local.db = sqlite3.connect(self.logs.index_db, check_same_thread=False)
            local.db.execute("PRAGMA query_only = 1")
            local.epoch = self.indexer.epoch
        return local.db

    # -- exchanges --------------------------------------------------------------------

    def page(self, f: Filters, before: int | None, limit: int) -> tuple[list[dict], int | None]:
        sql, params = query.page(f, before, limit + 1)
        rows = [dict(zip(ROW_FIELDS, r, strict=True)) for r in self._fts_safe(sql, params)]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, rows[-1]["seq"] if more and rows else None

    def _fts_safe(self, sql: str, params: list) -> list[tuple]:
        try:
            return self.db().execute(sql, params).fetchall()
        except sqlite3.OperationalError as e:
            if "fts5" in str(e):  # a term the query builder could not make harmless
                return []
            raise

    def changed(self, f: Filters, after: int, upto: int) -> list[dict]:
        sql, params = query.changed(f, after, upto)
        rows = [dict(zip(ROW_FIELDS, r, strict=True)) for r in self.db().execute(sql, params)]
        match = query.fts_query(f.q)
        if match is None:
            return rows
        return [r for r in rows if self._fts_safe(query.MATCHES, [match, r["seq"]])]

    def exchange(self, id: str) -> tuple[dict, dict] | None:
        """(row, merged exchange) of an id, or None."""
        found = (
            self.db()
            .execute(f"SELECT {query.COLUMNS}, e.data FROM exchanges e WHERE e.id = ?", (id,))
            .fetchone()
        )
        if found is None:
            return None
        return dict(zip(ROW_FIELDS, found[:-1], strict=True)), merged(found[-1])

    def detail(self, id: str) -> dict | None:
        found = self.exchange(id)
        if found is None:
            return None
        row, exchange = found
        bodies = {}
        for which, (ref, headers, size, capped) in body_parts(exchange).items():
            raw = read_body(self.logs.root, ref)
            download = f"/api/exchanges/{row['id']}/bodies/{which}"
            bodies[which] = body_view(
                raw, ref, headers=headers, size=size, capped=capped, download=download
            )
        ended = closing(exchange)
        return {
            "row": row,
            "exchange": exchange,
            "bodies": bodies,
            "timings": {"ttfb_ms": row["ttfb_ms"], "duration_ms": row["duration_ms"]},
            "addresses": {
                "client": _text(exchange.get("client")),
                "agent_dst": _text(exchange.get("agent_dst")),
                "upstream_src": _text(ended.get("upstream_src")),
                "upstream_dst": _text(ended.get("upstream_dst")),
            },
            "conversation": api_of(exchange.get("method"), exchange.get("path")),
        }

    def body(self, id: str, which: str) -> bytes | None:
        found = self.exchange(id)
        if found is None or which not in ("request", "response"):
            return None
        ref = body_parts(found[1])[which][0]
        return read_body(self.logs.root, ref)

    def for_har(self, f: Filters, limit: int) -> list[dict]:
        """The newest `limit` matching HTTP exchanges, oldest first."""
        sql, params = query.page(f, None, limit, columns="e.kind, e.data")
        found = reversed(self._fts_safe(sql, params))
        return [merged(data) for kind, data in found if kind != "tls_failed"]

    def session_exchanges(self, session: str) -> list[dict]:
        """The session's request exchanges, as `agentlog pcap --session` picks them."""
        found = self.db().execute(
            "SELECT e.data FROM exchanges e WHERE e.session = ? ORDER BY e.seq", (session,)
        )
        return [x for x in (merged(data) for (data,) in found) if x.get("event") == "request"]

    # -- summaries --------------------------------------------------------------------

    def domains(self, session: str | None) -> list[dict]:
        where, params = ("WHERE session = ?", [session]) if session else ("", [])
        found = self.db().execute(
            "SELECT domain, count(*), total(request_bytes), total(response_bytes),"
            " total(kind = 'blocked'), total(kind IN ('error', 'tls_failed')),"
            f" min(timestamp), max(timestamp) FROM exchanges {where}"
            " GROUP BY domain ORDER BY max(timestamp) DESC",
            params,
        )
        names = ("domain", "requests", "request_bytes", "response_bytes", "blocked", "errors")
        return [
            {
                **dict(zip(names, (r[0], r[1], *map(int, r[2:6])), strict=True)),
                "first_seen": r[6],
                "last_seen": r[7],
            }
            for r in found
        ]

    def sessions(self) -> list[dict]:
        found = self.db().execute(
            "SELECT session, min(timestamp), max(timestamp), count(*),"
            " total(kind = 'blocked'), total(kind IN ('error', 'tls_failed'))"
            " FROM exchanges GROUP BY session ORDER BY max(timestamp) DESC"
        )
        return [
            {
                "session": r[0],
                "first_seen": r[1],
                "last_seen": r[2],
                "exchanges": r[3],
                "blocked": int(r[4]),
                "errors": int(r[5]),
                "pcap": f"/api/sessions/{r[0]}/pcap",
            }
            for r in found
        ]

    def events(self, kinds: tuple[str, ...], before: int | None, limit: int):
        clauses: list[str] = []
        params: list[object] = []
        if kinds:
            clauses.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params += list(kinds)
        if before is not None:
            clauses.append("seq < ?")
            params.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        found = (
            self.db()
            .execute(
                f"SELECT seq, data FROM events {where} ORDER BY seq DESC LIMIT ?",
                [*params, limit + 1],
            )
            .fetchall()
        )
        items = [json.loads(data) for _, data in found[:limit]]
        return items, found[limit - 1][0] if len(found) > limit else None

    def events_between(self, after: int, upto: int) -> list[tuple[int, dict]]:
        found = self.db().execute(
            "SELECT seq, data FROM events WHERE seq > ? AND seq <= ? ORDER BY seq", (after, upto)
        )
        return [(seq, json.loads(data)) for seq, data in found]

    def counts(self) -> tuple[int, int]:
        db = self.db()
        exchanges = db.execute("SELECT count(*) FROM exchanges").fetchone()[0]
        return exchanges, db.execute("SELECT count(*) FROM events").fetchone()[0]

    # -- captures -----------------------------------------------------------------------

    def captures(self) -> list[dict]:
        items = []
        for path in self.logs.capture_files():
            try:
                st = path.stat()
            except OSError:
                continue
            first, last = packet_span(path, st.st_size, st.st_mtime_ns)
            id = LogsDir.capture_id(path.name)
            items.append(
                {
                    "id": id,
                    "name": path.name,
                    "size": st.st_size,
                    "first_packet": first,
                    "last_packet": last,
                    "download": f"/api/captures/{id}",
                }
            )
        return items


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


@lru_cache(maxsize=256)
def packet_span(path: Path, size: int, mtime_ns: int) -> tuple[str | None, str | None]:
    """RFC 3339 times of the first and last packet (cached per size and mtime)."""
    del size, mtime_ns  # the cache key: a file that grew is read again
    try:
        with open(path, "rb") as f:
            fmt = Format.parse(f.read(GLOBAL_HEADER_LEN))
            first = last = None
            end = os.fstat(f.fileno()).st_size
            offset = GLOBAL_HEADER_LEN
            while offset + RECORD_HEADER_LEN <= end:
                f.seek(offset)
                sec, sub, captured, _ = fmt.record_header.unpack(f.read(RECORD_HEADER_LEN))
                moment = sec + sub * fmt.tick
                first = moment if first is None else first
                last = moment
                offset += RECORD_HEADER_LEN + captured
    except (OSError, PcapError, ValueError):
        return None, None
    return (
        rfc3339(first) if first is not None else None,
        rfc3339(last) if last is not None else None,
    )
