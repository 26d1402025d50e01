"""The JSON API the page uses (docs/ui-api.md): routes, parameters and response schemas."""

import json
import re
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, BeforeValidator

from agentlog import __version__
from agentlog.capture.slicer import write_slice
from agentlog.conversation import Api
from agentlog.errors import UserError
from agentlog.formats.har import har
from agentlog.ui import live
from agentlog.ui.conversations import Conversation, Conversations, SessionConversation
from agentlog.ui.query import BadFilter, Filters, journal_time, split
from agentlog.ui.store import Store

PCAP = "application/vnd.tcpdump.pcap"
BINARY = "application/octet-stream"
JSON = "application/json"


class Problem(BaseModel):
    detail: str


class Row(BaseModel):
    id: str
    seq: int
    updated_seq: int
    timestamp: str
    session: str
    kind: str
    state: Literal["open", "closed"]
    method: str | None
    scheme: str | None
    domain: str | None
    port: int | None
    path: str | None
    status: int | None
    outcome: str
    request_bytes: int | None
    response_bytes: int | None
    ttfb_ms: float | None
    duration_ms: float | None
    pcap_file: str | None
    capture_id: str | None


class Page(BaseModel):
    items: list[Row]
    next: str | None


class Body(BaseModel):
    ref_id: str
    size: int | None
    stored_bytes: int
    capped: bool
    content_type: str | None
    kind: Literal["json", "text", "binary"]
    text: str | None
    truncated: bool
    download: str


class Bodies(BaseModel):
    request: Body | None
    response: Body | None


class Timings(BaseModel):
    ttfb_ms: float | None
    duration_ms: float | None


class Addresses(BaseModel):
    client: str | None
    agent_dst: str | None
    upstream_src: str | None
    upstream_dst: str | None


class Detail(BaseModel):
    row: Row
    exchange: dict[str, Any]
    bodies: Bodies
    timings: Timings
    addresses: Addresses
    # The model API its method and path name (GET .../conversation has the rest), or null.
    conversation: Api | None


class Domain(BaseModel):
    domain: str | None
    requests: int
    request_bytes: int
    response_bytes: int
    blocked: int
    errors: int
    first_seen: str
    last_seen: str


class Domains(BaseModel):
    items: list[Domain]


class Session(BaseModel):
    session: str
    first_seen: str
    last_seen: str
    exchanges: int
    blocked: int
    errors: int
    pcap: str


class Sessions(BaseModel):
    items: list[Session]


class Capture(BaseModel):
    id: str
    name: str
    size: int
    first_packet: str | None
    last_packet: str | None
    download: str


class Captures(BaseModel):
    items: list[Capture]


class Events(BaseModel):
    items: list[dict[str, Any]]
    next: str | None


class Status(BaseModel):
    version: str
    indexed_seq: int
    exchanges: int
    events: int
    indexing: bool
    journal: bool


def json_response(content: object, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON, ASCII-only: any string the journal holds survives the trip."""
    body = json.dumps(content, separators=(",", ":"))
    return Response(body, media_type="application/json", headers=headers)


def _rfc3339(value: object) -> object:
    """Only a date and time: pydantic would take a bare number as a Unix time."""
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d\d-\d\d[Tt ].+", value.strip()):
        raise ValueError("expected an RFC 3339 date and time")
    return value


Moment = Annotated[datetime | None, BeforeValidator(_rfc3339), Query()]


def filters(
    domain: Annotated[str | None, Query(description="domain glob: * and ?")] = None,
    method: Annotated[str | None, Query(description="GET, or GET,POST")] = None,
    status: Annotated[
        str | None,
        Query(
            description="2xx..5xx or a code, comma-separated",
            pattern=r"^\s*([1-5]xx|[1-5]XX|[1-5][0-9][0-9])(\s*,\s*([1-5]xx|[1-5]XX|[1-5][0-9][0-9]))*\s*$",
        ),
    ] = None,
    kind: Annotated[str | None, Query(description="request, blocked, error, ...")] = None,
    session: str | None = None,
    since: Moment = None,
    until: Moment = None,
    q: Annotated[str | None, Query(description="free text over path, headers, bodies")] = None,
    changed_after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Filters:
    for moment in (since, until):
        if moment is not None:
            try:
                journal_time(moment)
            except (OverflowError, ValueError):
                raise HTTPException(400, "since/until: a time this program can compare") from None
    return Filters(
        domain=domain,
        method=split(method),
        status=split(status),
        kind=split(kind),
        session=session,
        since=since,
        until=until,
        q=q,
        changed_after=changed_after,
    )


Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$", description="a `next` value")]
FiltersDep = Annotated[Filters, Depends(filters)]


def _cursor(value: str | None) -> int | None:
    return int(value) if value is not None else None


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def router(store: Store) -> APIRouter:
    api = APIRouter(
        prefix="/api",
        dependencies=[Depends(HTTPBearer(auto_error=False))],  # documents the token
        responses={
            400: {"model": Problem},
            401: {"model": Problem},
            404: {"model": Problem},
            421: {"model": Problem},
        },
    )

    conversations = Conversations(store)

    def exchange_or_404(id: str) -> tuple[dict, dict]:
        found = store.exchange(id)
        if found is None:
            raise HTTPException(404, "no such exchange")
        return found

    @api.get("/exchanges", response_model=Page)
    def list_exchanges(
        f: FiltersDep, before: Cursor = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> Response:
        try:
            items, next = store.page(f, _cursor(before), limit)
        except BadFilter as e:
            raise HTTPException(400, str(e)) from None
        return json_response({"items": items, "next": None if next is None else str(next)})

    @api.get("/exchanges/{id}", response_model=Detail)
    def one_exchange(id: str) -> Response:
        detail = store.detail(id)
        if detail is None:
            raise HTTPException(404, "no such exchange")
        return json_response(detail)

    @api.get(
        "/exchanges/{id}/bodies/{which}",
        response_class=Response,
        responses={200: {"content": {BINARY: {}}}},
    )
    def body(id: str, which: Annotated[str, PathParam(description="request|response")]) -> Response:
        raw = store.body(id, which)
        if raw is None:
            raise HTTPException(404, "no such body")
        return Response(raw, media_type=BINARY, headers=_attachment(f"{id}-{which}.bin"))

    @api.get("/exchanges/{id}/conversation", response_model=Conversation)
    def exchange_conversation(id: str) -> Response:
        found = conversations.exchange(id)
        if found is None:
            exchange_or_404(id)
            raise HTTPException(404, "not a model API call")
        return json_response(found)

    @api.get("/sessions/{id}/conversation", response_model=SessionConversation)
    def session_conversation(id: str) -> Response:
        found = conversations.session(id)
        if found is None:
            raise HTTPException(404, "no such session")
        return json_response(found)

    def pcap(exchanges: list[dict], name: str) -> Response:
        with tempfile.TemporaryDirectory(prefix="agentlog-ui-") as tmp:
            out = Path(tmp) / "out.pcapng"
            try:
                write_slice(store.logs, exchanges, out)
            except UserError as e:
                raise HTTPException(404, str(e)) from None
            return Response(out.read_bytes(), media_type=PCAP, headers=_attachment(name))

    pcap_doc: dict = {"response_class": Response, "responses": {200: {"content": {PCAP: {}}}}}

    @api.get("/exchanges/{id}/pcap", **pcap_doc)
    def exchange_pcap(id: str) -> Response:
        _, exchange = exchange_or_404(id)
        return pcap([exchange], f"{id}.pcapng")

    @api.get("/sessions/{id}/pcap", **pcap_doc)
    def session_pcap(id: str) -> Response:
        exchanges = store.session_exchanges(id)
        if not exchanges:
            raise HTTPException(404, "no request in that session")
        return pcap(exchanges, f"{id}.pcapng")

    @api.get("/har", response_class=Response, responses={200: {"content": {JSON: {}}}})
    def har_of(f: FiltersDep, limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> Response:
        try:
            chosen = store.for_har(f, limit)
        except BadFilter as e:
            raise HTTPException(400, str(e)) from None
        return json_response(har(store.logs.root, chosen), _attachment("agentlog.har"))

    @api.get("/domains", response_model=Domains)
    def domains(session: str | None = None) -> Response:
        return json_response({"items": store.domains(session)})

    @api.get("/sessions", response_model=Sessions)
    def sessions() -> Response:
        return json_response({"items": store.sessions()})

    @api.get("/captures", response_model=Captures)
    def captures() -> Response:
        return json_response({"items": store.captures()})

    @api.get("/captures/{id}", response_class=FileResponse, responses=pcap_doc["responses"])
    def capture(id: str) -> FileResponse:
        path = store.logs.capture_by_id(id)
        if path is None:
            raise HTTPException(404, "no such capture")
        return FileResponse(path, media_type=PCAP, filename=path.name)

    @api.get("/events", response_model=Events)
    def events(
        kind: str | None = None,
        before: Cursor = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Response:
        items, next = store.events(split(kind), _cursor(before), limit)
        return json_response({"items": items, "next": None if next is None else str(next)})

    @api.get("/status", response_model=Status)
    def status() -> Response:
        exchanges, events = store.counts()
        return json_response(
            {
                "version": __version__,
                "indexed_seq": store.indexer.indexed_seq,
                "exchanges": exchanges,
                "events": events,
                "indexing": store.indexer.indexing,
                "journal": store.logs.journal.exists(),
            }
        )

    @api.get(
        "/live",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def live_feed(
        request: Request,
        f: FiltersDep,
        last_event_id: Annotated[int | None, Query(ge=0, le=2**62)] = None,
        last_event_id_header: Annotated[
            str | None, Header(alias="Last-Event-ID", include_in_schema=False)
        ] = None,
    ) -> StreamingResponse:
        last = last_event_id
        if last_event_id_header is not None and last_event_id_header.strip().isdigit():
            last = min(int(last_event_id_header.strip()), 2**62)
        body = live.stream(store, store.indexer, f, last, request.is_disconnected)
        return StreamingResponse(body, media_type="text/event-stream")

    return api
