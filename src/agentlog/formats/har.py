"""HAR 1.2 from recorded exchanges (browser devtools, HTTP Toolkit).

Built from the journal and the stored bodies, so it holds what they hold:
redacted headers and bodies, cut at the body cap.
"""

import base64
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import parse_qsl

from agentlog import __version__
from agentlog.journal.reader import read_body


def har(root: Path, exchanges: Iterable[dict]) -> dict:
    """A HAR document of request exchanges (not tls_failed ones), in the order given."""
    return {
        "log": {
            "version": "1.2",
            "creator": {"name": "agentlog", "version": __version__},
            "entries": [har_entry(root, x) for x in exchanges],
        }
    }


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


def _failure(x: dict) -> str:
    """Why there is no response: the error, or the policy's reason."""
    if "error" in x:
        return x["error"].get("error") or ""
    return x.get("blocked", {}).get("reason", "")


def har_entry(root: Path, x: dict) -> dict:
    """One entry; `x` is a well-formed exchange (journal.schema), fields may be missing."""
    scheme, port, path = x.get("scheme", ""), x.get("port"), x.get("path", "")
    url = f"{scheme}://{x.get('domain', '')}"
    default = {"http": 80, "https": 443}.get(scheme)
    url += ("" if port in (default, None) else f":{port}") + path
    query = path.partition("#")[0].partition("?")[2]  # urlsplit(url) balks at a bad host
    req_headers = x.get("headers", {})
    request = {
        "method": x.get("method", ""),
        "url": url,
        "httpVersion": x.get("http_version", ""),
        "cookies": [],
        "headers": _headers(req_headers),
        "queryString": [
            {"name": k, "value": v} for k, v in parse_qsl(query, keep_blank_values=True)
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
        "statusText": response_event.get("reason", "") or _failure(x),
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
        "startedDateTime": x.get("timestamp", ""),
        "time": total,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {"send": 0, "wait": ttfb, "receive": max(total - ttfb, 0)},
        "_agentlog_id": x["id"],
        "_agentlog_decision": x.get("decision"),
    }
