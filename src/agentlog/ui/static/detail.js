// One exchange, expanded: what was sent and received, when, between which
// addresses, and links to its packets. Every value is agent text.

import { api, isExchangeId, isSessionId, links } from "./api.js";
import { renderBody } from "./body.js";
import { renderConversation } from "./conversation.js";
import { fill, h } from "./dom.js";
import { bytes, ms, url } from "./format.js";

export function renderDetail(data) {
  const { row, exchange } = data;
  const response = typeof exchange.response === "object" ? exchange.response : null;
  // Links are built from the id; an id of another shape gets none.
  const linked = isExchangeId(row.id);
  const panes = h(
    "div",
    { class: "panes" },
    pane("Request", exchange.headers, renderBody(data.bodies?.request, linked && links.body(row.id, "request"))),
    pane(
      "Response",
      response?.headers,
      response ? renderBody(data.bodies?.response, linked && links.body(row.id, "response")) : null,
    ),
  );
  return h(
    "div",
    { class: "detail" },
    h(
      "div",
      { class: "detail-head" },
      row.method ? h("span", { class: "method" }, row.method) : null,
      h("span", { class: "full-url" }, row.path === null ? row.domain ?? "" : url(row)),
      h("span", { class: "spacer" }),
      linked ? actions(row) : null,
    ),
    facts(data),
    data.conversation && linked ? withConversation(row, panes) : panes,
  );
}

// A model API call opens as its conversation; its headers and bodies are a tab away.
function withConversation(row, panes) {
  const view = h("div", { class: "conversation-view" }, h("div", { class: "loading" }, "reading the conversation…"));
  const tabs = [
    h("button", { class: "tab", type: "button", role: "tab", "aria-selected": "true", "data-view": "conversation" }, "conversation"),
    h("button", { class: "tab", type: "button", role: "tab", "aria-selected": "false", "data-view": "raw" }, "headers and bodies"),
  ];
  const show = (which) => {
    view.hidden = which !== "conversation";
    panes.hidden = which === "conversation";
    for (const tab of tabs) tab.setAttribute("aria-selected", String(tab.getAttribute("data-view") === which));
  };
  for (const tab of tabs) tab.addEventListener("click", () => show(tab.getAttribute("data-view")));
  show("conversation");
  api
    .conversation(row.id)
    .then((c) => fill(view, renderConversation(c)))
    .catch((error) => {
      fill(view, h("div", { class: "loading error" }, `no conversation to show: ${error.message}`));
      show("raw");
    });
  const session = isSessionId(row.session)
    ? h("a", { class: "action", href: links.sessionView(row.session) }, "this session's conversation")
    : null;
  return [h("div", { class: "view-switch", role: "tablist" }, tabs, h("span", { class: "spacer" }), session), view, panes];
}

function actions(row) {
  const items = [];
  if (row.pcap_file) {
    items.push(h("a", { class: "action packets", href: links.exchangePcap(row.id), download: true }, "download packets"));
  }
  // Without a capture file there are no packets of this session to cut either.
  if (row.pcap_file && isSessionId(row.session)) {
    items.push(h("a", { class: "action", href: links.sessionPcap(row.session), download: true }, "session packets"));
  }
  items.push(h("a", { class: "action", href: `/?open=${encodeURIComponent(row.id)}` }, "link"));
  return h("span", { class: "actions" }, items);
}

function fact(label, value, cls) {
  if (value === null || value === undefined || value === "") return null;
  return [h("dt", {}, label), h("dd", cls ? { class: cls } : {}, String(value))];
}

function facts({ row, exchange, timings, addresses }) {
  const response = exchange.response;
  const blocked = exchange.blocked;
  // A tls_failed exchange's `error` is its own text; others' is the error event.
  const error = typeof exchange.error === "object" ? exchange.error : null;
  const ws = exchange.websocket;
  const status = response ? `${response.status} ${response.reason ?? ""}`.trim() : row.outcome;
  return h(
    "dl",
    { class: "facts" },
    fact("status", status, row.kind === "request" ? null : "bad"),
    fact("started", row.timestamp, "mono"),
    fact("ttfb", ms(timings?.ttfb_ms)),
    fact("duration", ms(timings?.duration_ms)),
    fact("sent", bytes(row.request_bytes)),
    fact("received", bytes(row.response_bytes)),
    fact("client", addresses?.client),
    fact("agent dst", addresses?.agent_dst),
    fact("upstream src", addresses?.upstream_src),
    fact("upstream dst", addresses?.upstream_dst),
    fact("http", [exchange.http_version, response?.http_version].filter(Boolean).join(" / ")),
    fact("mode", exchange.mode),
    fact("decision", exchange.decision),
    fact("pcap file", row.pcap_file ?? "none (no capture)"),
    blocked ? fact("blocked by", [blocked.rule, blocked.reason].filter(Boolean).join(": "), "bad") : null,
    error ? fact("error", `${error.error} (${error.stage})`, "bad") : null,
    row.kind === "tls_failed" ? fact("tls error", String(exchange.error ?? ""), "bad") : null,
    ws
      ? fact(
          "websocket",
          `${ws.messages_from_client} sent (${bytes(ws.bytes_from_client)}), ` +
            `${ws.messages_from_server} received (${bytes(ws.bytes_from_server)}), ` +
            `close ${ws.close_code ?? "-"} ${ws.close_reason ?? ""}`,
        )
      : null,
    fact("session", row.session, "mono"),
    fact("id", row.id, "mono"),
  );
}

function pane(title, headers, body) {
  const entries = headers && typeof headers === "object" ? Object.entries(headers) : [];
  return h(
    "section",
    { class: "pane" },
    h("h3", {}, title, h("span", { class: "count" }, entries.length ? `${entries.length} headers` : "")),
    entries.length
      ? h(
          "table",
          { class: "headers" },
          h("tbody", {}, entries.map(([name, value]) => h("tr", {}, h("th", {}, name), h("td", {}, String(value))))),
        )
      : h("div", { class: "empty" }, headers ? "no headers" : "none"),
    body,
  );
}
