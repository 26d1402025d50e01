// New and changed rows as they happen: the SSE feed, and polling every 5 s
// while the feed is down (it reconnects by itself; polling stops when it does).

import { api, links } from "./api.js";

const POLL_MS = 5000;
const POLL_LIMIT = 1000;

export class LiveFeed {
  constructor({ onRow, onReset, onState }) {
    this.onRow = onRow;
    this.onReset = onReset;
    this.onState = onState; // "live" | "polling" | "stopped"
    this.source = null;
    this.timer = null;
    this.lastSeq = 0;
    this.filters = {};
  }

  start(filters, lastSeq) {
    this.stop();
    this.filters = filters;
    this.lastSeq = lastSeq;
    this.connect();
  }

  stop() {
    this.source?.close();
    this.source = null;
    clearInterval(this.timer);
    this.timer = null;
  }

  connect() {
    const source = new EventSource(links.live(this.filters, this.lastSeq));
    this.source = source;
    source.addEventListener("open", () => {
      if (this.source !== source) return;
      clearInterval(this.timer);
      this.timer = null;
      this.onState("live");
    });
    source.addEventListener("exchange", (message) => {
      if (this.source !== source) return;
      this.seen(Number(message.lastEventId));
      this.onRow(JSON.parse(message.data));
    });
    source.addEventListener("reset", () => this.source === source && this.onReset());
    source.addEventListener("error", () => {
      if (this.source !== source) return;
      this.onState("polling");
      this.timer ??= setInterval(() => this.poll(), POLL_MS);
    });
  }

  seen(seq) {
    if (Number.isFinite(seq)) this.lastSeq = Math.max(this.lastSeq, seq);
  }

  async poll() {
    // A feed that gave up (EventSource stops retrying after an HTTP error) is tried again.
    if (this.source?.readyState === EventSource.CLOSED) {
      this.source.close();
      this.connect();
    }
    let page;
    try {
      page = await api.exchanges(this.filters, { changed_after: this.lastSeq, limit: POLL_LIMIT });
    } catch {
      return; // the server is away; try again at the next tick
    }
    if (page.next !== null) {
      this.onReset(); // more changed than a poll carries: load the list afresh
      return;
    }
    for (const row of page.items.reverse()) {
      this.seen(row.updated_seq);
      this.onRow(row);
    }
  }
}
