// The list of exchanges, newest first: pages from the API, rows upserted from
// the live feed, one selected row, rows expanded in place.

import { api } from "./api.js";
import { renderDetail } from "./detail.js";
import { fill, h } from "./dom.js";
import * as fmt from "./format.js";

const PAGE = 100;
const COLUMNS = 9;

// What the path column says for exchanges that have no HTTP path.
const NO_PATH = {
  tls_failed: "TLS handshake refused by the client",
  tcp: "raw TCP connection",
  bypass: "bypassed the proxy",
};

function cells(row) {
  return [
    h("td", { class: "time", title: row.timestamp }, fmt.clock(row.timestamp)),
    h("td", { class: "method" }, row.method ?? (row.kind === "tls_failed" ? "TLS" : "")),
    h("td", { class: fmt.outcomeClass(row) }, fmt.outcome(row)),
    h("td", { class: "host", title: fmt.host(row) }, fmt.host(row)),
    row.path === null || row.path === undefined
      ? h("td", { class: "path none" }, NO_PATH[row.kind] ?? row.kind ?? "")
      : h("td", { class: "path", title: row.path }, row.path),
    h("td", { class: "num" }, fmt.bytes(row.request_bytes)),
    h("td", { class: "num" }, fmt.bytes(row.response_bytes)),
    h("td", { class: "num" }, fmt.ms(row.ttfb_ms)),
    h("td", { class: "num" }, fmt.ms(row.duration_ms)),
  ];
}

export class RequestList {
  constructor(tbody, sentinel, { onChange, onError }) {
    this.tbody = tbody;
    this.onChange = onChange; // the shown rows or the open row changed
    this.onError = onError;
    this.entries = new Map(); // id -> {row, tr, detail: tr | null}
    this.filters = {};
    this.next = null; // cursor of the next (older) page; null: all loaded
    this.lastSeq = 0; // the newest updated_seq seen: where live and polling resume
    this.indexed = null; // how far the index had read when the list was loaded
    this.selected = null;
    this.generation = 0; // bumped by load(): answers to older loads are dropped
    this.loading = false;
    new IntersectionObserver((seen) => {
      if (seen.some((s) => s.isIntersecting)) this.loadMore();
    }, { rootMargin: "400px" }).observe(sentinel);
    tbody.addEventListener("click", (event) => this.clicked(event));
  }

  get count() {
    return this.entries.size;
  }

  get complete() {
    return this.next === null;
  }

  get openId() {
    for (const [id, entry] of this.entries) if (entry.detail) return id;
    return null;
  }

  // The first page for `filters`; the list is replaced when it arrives.
  async load(filters) {
    const generation = ++this.generation;
    this.filters = filters;
    this.loading = true;
    let page;
    let indexed;
    try {
      // Read before the list: the live feed resumes from here, so a row that
      // changes while the page loads is not missed (nor an old one replayed).
      indexed = (await api.status()).indexed_seq;
      page = await api.exchanges(filters, { limit: PAGE });
    } catch (error) {
      if (generation === this.generation) {
        this.loading = false;
        this.showMessage(error.message);
        this.onError(error);
      }
      return false;
    }
    if (generation !== this.generation) return false;
    this.loading = false;
    this.entries.clear();
    this.selected = null;
    this.tbody.replaceChildren();
    this.next = page.next;
    this.lastSeq = indexed;
    this.indexed = indexed;
    const rows = page.items.map((row) => this.build(row));
    this.tbody.append(...rows);
    for (const row of page.items) this.lastSeq = Math.max(this.lastSeq, row.updated_seq);
    if (!page.items.length) this.showMessage(this.emptyText());
    performance.mark("agentlog:rows"); // bench/bench_ui_page.py times page loads by it
    this.onChange();
    return true;
  }

  async loadMore() {
    if (this.loading || this.next === null) return;
    const generation = this.generation;
    this.loading = true;
    try {
      const page = await api.exchanges(this.filters, { limit: PAGE, before: this.next });
      if (generation !== this.generation) return;
      this.next = page.next;
      for (const row of page.items) {
        if (!this.entries.has(row.id)) this.tbody.append(this.build(row));
        this.lastSeq = Math.max(this.lastSeq, row.updated_seq);
      }
      this.onChange();
    } catch (error) {
      if (generation === this.generation) this.onError(error);
    } finally {
      if (generation === this.generation) this.loading = false;
    }
  }

  emptyText() {
    return Object.keys(this.filters).length ? "No requests match these filters." : "No requests recorded yet.";
  }

  showMessage(text) {
    fill(this.tbody, h("tr", { class: "message" }, h("td", { colspan: COLUMNS }, text)));
  }

  build(row) {
    const tr = h("tr", { class: fmt.rowClasses(row), "data-id": row.id, tabindex: -1 }, cells(row));
    this.entries.set(row.id, { row, tr, detail: null });
    return tr;
  }

  // A row from the live feed or a poll: replace it in place, or insert it by seq.
  upsert(row) {
    this.lastSeq = Math.max(this.lastSeq, row.updated_seq ?? 0);
    const entry = this.entries.get(row.id);
    if (entry) {
      const wasOpen = entry.row.state === "open";
      entry.row = row;
      entry.tr.className = fmt.rowClasses(row) + (this.selected === row.id ? " selected" : "");
      fill(entry.tr, cells(row));
      if (entry.detail && wasOpen) this.showDetail(row.id);
      return;
    }
    const before = this.firstOlderThan(row.seq);
    if (!before && !this.complete) return; // older than what is loaded: comes with its page
    this.tbody.querySelector("tr.message")?.remove();
    const tr = this.build(row);
    tr.classList.add("fresh");
    this.tbody.insertBefore(tr, before);
    this.onChange();
  }

  // The row to insert a row of `seq` before (rows are in descending seq), or null.
  firstOlderThan(seq) {
    const top = this.entries.get(this.tbody.querySelector("tr.row")?.getAttribute("data-id"));
    if (!top || top.row.seq < seq) return top?.tr ?? null; // the usual case: newest of all
    let best = null;
    for (const entry of this.entries.values()) {
      if (entry.row.seq < seq && (!best || entry.row.seq > best.row.seq)) best = entry;
    }
    return best?.tr ?? null;
  }

  clicked(event) {
    const tr = event.target.closest("tr");
    if (!tr || !tr.classList.contains("row")) return;
    const id = tr.getAttribute("data-id");
    this.select(id);
    this.toggle(id);
  }

  rowElements() {
    return [...this.tbody.querySelectorAll("tr.row")];
  }

  select(id, { scroll = false } = {}) {
    const previous = this.entries.get(this.selected);
    if (previous) {
      previous.tr.classList.remove("selected");
      previous.tr.setAttribute("tabindex", "-1");
    }
    const entry = this.entries.get(id);
    this.selected = entry ? id : null;
    if (!entry) return;
    entry.tr.classList.add("selected");
    entry.tr.setAttribute("tabindex", "0");
    entry.tr.focus({ preventScroll: true });
    if (scroll) entry.tr.scrollIntoView({ block: "nearest" });
  }

  // j/k: the next (+1, older) or previous (-1, newer) row.
  move(delta) {
    const rows = this.rowElements();
    if (!rows.length) return;
    const at = rows.findIndex((tr) => tr.getAttribute("data-id") === this.selected);
    const to = at < 0 ? 0 : Math.min(rows.length - 1, Math.max(0, at + delta));
    this.select(rows[to].getAttribute("data-id"), { scroll: true });
    if (to === rows.length - 1) this.loadMore();
  }

  toggle(id) {
    const entry = this.entries.get(id);
    if (!entry) return;
    if (entry.detail) {
      entry.detail.remove();
      entry.detail = null;
      entry.tr.removeAttribute("aria-expanded");
      this.onChange();
    } else {
      this.expand(id);
    }
  }

  // Open `id` (closing any other open row) and fetch what it holds.
  expand(id) {
    for (const [other, entry] of this.entries) {
      if (other !== id && entry.detail) {
        entry.detail.remove();
        entry.detail = null;
        entry.tr.removeAttribute("aria-expanded");
      }
    }
    const entry = this.entries.get(id);
    if (!entry) return;
    if (!entry.detail) {
      entry.detail = h("tr", { class: "detail-row" }, h("td", { colspan: COLUMNS }, h("div", { class: "loading" }, "loading…")));
      entry.tr.after(entry.detail);
      entry.tr.setAttribute("aria-expanded", "true");
    }
    this.showDetail(id);
    this.onChange();
  }

  async showDetail(id) {
    const entry = this.entries.get(id);
    let content;
    try {
      content = renderDetail(await api.exchange(id));
    } catch (error) {
      content = h("div", { class: "loading error" }, `could not load this exchange: ${error.message}`);
    }
    if (entry.detail) fill(entry.detail.firstChild, content);
  }

  // A row named in the URL (?open=ID) that the first page did not hold.
  async reveal(id) {
    if (!this.entries.has(id)) {
      try {
        const data = await api.exchange(id);
        this.upsertForced(data.row);
      } catch (error) {
        this.onError(error);
        return;
      }
    }
    this.select(id);
    this.expand(id);
    this.entries.get(id)?.tr.scrollIntoView({ block: "center" });
  }

  upsertForced(row) {
    const before = this.firstOlderThan(row.seq);
    this.tbody.querySelector("tr.message")?.remove();
    this.tbody.insertBefore(this.build(row), before);
  }
}
