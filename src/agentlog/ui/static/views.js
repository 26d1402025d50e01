// The domains view and the captures view (capture files and sessions).

import { api, isCaptureId, isSessionId, links } from "./api.js";
import { fill, h } from "./dom.js";
import { bytes, dateTime } from "./format.js";

function table(headings, rows, empty) {
  return h(
    "table",
    { class: "grid" },
    h("thead", {}, h("tr", {}, headings.map(([text, cls]) => h("th", cls ? { class: cls } : {}, text)))),
    h("tbody", {}, rows.length ? rows : h("tr", { class: "message" }, h("td", { colspan: headings.length }, empty))),
  );
}

// Each domain with its counts; choosing one filters the request list by it.
export async function showDomains(root, session, onPick) {
  const { items } = await api.domains(session);
  const rows = items.map((d) => {
    const tr = h(
      "tr",
      { class: d.blocked || d.errors ? "row alarming" : "row", tabindex: 0, title: "show its requests" },
      h("td", { class: "host" }, d.domain ?? "(no name)"),
      h("td", { class: "num" }, d.requests.toLocaleString("en")),
      h("td", { class: "num" }, bytes(d.request_bytes)),
      h("td", { class: "num" }, bytes(d.response_bytes)),
      h("td", { class: d.blocked ? "num bad" : "num" }, String(d.blocked)),
      h("td", { class: d.errors ? "num bad" : "num" }, String(d.errors)),
      h("td", { class: "time" }, dateTime(d.first_seen)),
      h("td", { class: "time" }, dateTime(d.last_seen)),
    );
    const pick = () => d.domain && onPick(d.domain);
    tr.addEventListener("click", pick);
    tr.addEventListener("keydown", (event) => event.key === "Enter" && pick());
    return tr;
  });
  fill(
    root,
    table(
      [["domain"], ["requests", "num"], ["sent", "num"], ["received", "num"], ["blocked", "num"], ["errors", "num"], ["first seen"], ["last seen"]],
      rows,
      "No domains yet.",
    ),
  );
}

function span(first, last) {
  if (!first) return "";
  const seconds = last ? (new Date(last) - new Date(first)) / 1000 : 0;
  const length = seconds >= 3600 ? `${(seconds / 3600).toFixed(1)} h` : seconds >= 60 ? `${Math.round(seconds / 60)} min` : `${Math.round(seconds)} s`;
  return `${dateTime(first)} → ${dateTime(last)} (${length})`;
}

export async function showCaptures(root) {
  const [captures, sessions] = await Promise.all([api.captures(), api.sessions()]);
  const fileRows = captures.items.map((c) =>
    h(
      "tr",
      { class: "row" },
      h("td", { class: "mono" }, c.name),
      h("td", { class: "num" }, bytes(c.size)),
      h("td", { class: "time" }, span(c.first_packet, c.last_packet)),
      h("td", {}, isCaptureId(c.id) ? h("a", { class: "action", href: links.capture(c.id), download: true }, "download") : null),
    ),
  );
  const sessionRows = sessions.items.map((s) =>
    h(
      "tr",
      { class: s.blocked || s.errors ? "row alarming" : "row" },
      h("td", { class: "mono" }, s.session),
      h("td", { class: "num" }, s.exchanges.toLocaleString("en")),
      h("td", { class: s.blocked ? "num bad" : "num" }, String(s.blocked)),
      h("td", { class: s.errors ? "num bad" : "num" }, String(s.errors)),
      h("td", { class: "time" }, span(s.first_seen, s.last_seen)),
      h("td", {}, isSessionId(s.session) ? h("a", { class: "action", href: links.sessionPcap(s.session), download: true }, "packets") : null),
    ),
  );
  fill(
    root,
    h("h2", {}, "Capture files"),
    table([["file"], ["size", "num"], ["time span"], [""]], fileRows, "No capture files (the proxy runs without --capture)."),
    h("h2", {}, "Sessions"),
    table([["session"], ["exchanges", "num"], ["blocked", "num"], ["errors", "num"], ["time span"], [""]], sessionRows, "No sessions yet."),
  );
}
