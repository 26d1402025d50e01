"""agentlog export --har: the recorded exchanges as HAR 1.2 (browser devtools, HTTP Toolkit).

Built from the journal and the stored bodies, so it holds what they hold:
redacted headers and bodies, cut at the body cap.
"""

import argparse
import base64
import json
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from agentlog import __version__
from agentlog.errors import NotFound
from agentlog.journal.reader import events, exchanges, read_body
from agentlog.logsdir import LogsDir


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    p = sub.add_parser("export", parents=[parent], help="export recorded requests as HAR")
    p.add_argument("--har", action="store_true", required=True, help="write HAR 1.2")
    p.add_argument("--session", help="only this session's requests")
    p.add_argument("-o", "--output", type=Path, required=True, help="the .har file to write")
    p.set_defaults(run=run)


def _headers(headers: dict) -> list[dict]:
    return [{"name": name, "value": value} for name, value in headers.items()]


def _content(root: Path, ref: object, mime: str, size: int | None) -> dict:
    content: dict = {"size": size if size is not None else -1, "mimeType": mime}
    raw = read_body(root, ref)
    if raw is not None:
        try:
            content["text"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            content["text"], content["encoding"] = base64.b64encode(raw).decode(), "base64"
    return content


def har_entry(root: Path, x: dict) -> dict:
    url = f"{x['scheme']}://{x['domain']}"
    default = {"http": 80, "https": 443}.get(x["scheme"])
    url += ("" if x["port"] == default else f":{x['port']}") + x["path"]
    req_headers = x.get("headers", {})
    request = {
        "method": x["method"],
        "url": url,
        "httpVersion": x.get("http_version", ""),
        "cookies": [],
        "headers": _headers(req_headers),
        "queryString": [
            {"name": k, "value": v}
            for k, v in parse_qsl(urlsplit(url).query, keep_blank_values=True)
        ],
        "headersSize": -1,
        "bodySize": x.get("request_bytes") or 0,
    }
    if x.get("request_body"):
        post = _content(root, x["request_body"], req_headers.get("content-type", ""), None)
        request["postData"] = {"mimeType": post["mimeType"], "text": post.get("text", "")}
    response_event = x.get("response") or {}
    resp_headers = response_event.get("headers", {})
    response = {
        "status": response_event.get("status", 0),
        "statusText": response_event.get("reason", "")
        or (x["error"]["error"] if "error" in x else x.get("blocked", {}).get("reason", "")),
        "httpVersion": response_event.get("http_version", ""),
        "cookies": [],
        "headers": _headers(resp_headers),
        "content": _content(
            root,
            response_event.get("response_body"),
            resp_headers.get("content-type", ""),
            response_event.get("response_bytes"),
        ),
        "redirectURL": resp_headers.get("location", ""),
        "headersSize": -1,
        "bodySize": response_event.get("response_bytes", -1),
    }
    ttfb = response_event.get("ttfb_ms") or 0
    total = response_event.get("duration_ms") or ttfb
    return {
        "startedDateTime": x["timestamp"],
        "time": total,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {"send": 0, "wait": ttfb, "receive": max(total - ttfb, 0)},
        "_agentlog_id": x["id"],
        "_agentlog_decision": x.get("decision"),
    }


def run(args: argparse.Namespace) -> int:
    logs = LogsDir(args.logs)
    chosen = [
        x
        for x in exchanges(events(logs.existing_journal())).values()
        if x.get("event") == "request"
        and (args.session is None or x.get("session") == args.session)
    ]
    if not chosen:
        raise NotFound("no recorded requests to export")
    har = {
        "log": {
            "version": "1.2",
            "creator": {"name": "agentlog", "version": __version__},
            "entries": [har_entry(logs.root, x) for x in chosen],
        }
    }
    args.output.write_text(json.dumps(har, indent=1, ensure_ascii=False))
    print(f"{args.output}: {len(chosen)} request(s)")
    return 0
