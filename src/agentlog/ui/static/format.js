// Pure formatting of row and exchange values for display (no DOM).

export function bytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = n / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

export function ms(n) {
  if (n === null || n === undefined) return "";
  if (n < 10) return `${n.toFixed(1)} ms`;
  if (n < 10000) return `${Math.round(n)} ms`;
  return `${(n / 1000).toFixed(1)} s`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

// "14:03:07.123" in local time; the date too when it is not today.
export function clock(timestamp, now = new Date()) {
  const t = new Date(timestamp);
  if (Number.isNaN(t.getTime())) return String(timestamp ?? "");
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}.${pad(t.getMilliseconds(), 3)}`;
  if (t.toDateString() === now.toDateString()) return time;
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${time}`;
}

// "2025-01-31 14:03:07" local, for spans and first/last seen.
export function dateTime(timestamp) {
  if (!timestamp) return "";
  const t = new Date(timestamp);
  if (Number.isNaN(t.getTime())) return String(timestamp);
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
}

const DEFAULT_PORTS = { http: 80, https: 443 };

// "api.example.com" or "api.example.com:8443" (the port only when it is not the scheme's).
export function host(row) {
  const domain = row.domain ?? "(no name)";
  if (row.port === null || row.port === undefined) return domain;
  return DEFAULT_PORTS[row.scheme] === row.port ? domain : `${domain}:${row.port}`;
}

export function url(row) {
  return `${row.scheme ?? "?"}://${host(row)}${row.path ?? ""}`;
}

// Row kinds that get their own look; anything else the server sends looks plain.
const KINDS = new Set(["request", "blocked", "error", "tls_failed", "websocket", "tcp", "bypass"]);
// Kinds a person should notice at once.
const ALARMING = new Set(["blocked", "error", "tls_failed", "tcp", "bypass"]);

// CSS classes of a row, from a fixed set (never from row text).
export function rowClasses(row) {
  const classes = ["row"];
  if (KINDS.has(row.kind)) classes.push(`kind-${row.kind}`);
  if (ALARMING.has(row.kind)) classes.push("alarming");
  if (row.state === "open") classes.push("open");
  const status = Number(row.status);
  if (status >= 400 && status < 600) classes.push(`status-${Math.floor(status / 100)}xx`);
  return classes.join(" ");
}

// The status column: the HTTP status, or what happened instead.
export function outcome(row) {
  if (row.kind === "request" && row.state === "open") return "pending";
  return String(row.outcome ?? row.status ?? "");
}

// Class of the status cell, from a fixed set.
export function outcomeClass(row) {
  const status = Number(row.status);
  if (row.kind !== "request" && row.kind !== "websocket") return "outcome bad";
  if (row.state === "open") return "outcome pending";
  if (status >= 500) return "outcome bad";
  if (status >= 400) return "outcome warn";
  if (status >= 300) return "outcome redirect";
  return "outcome ok";
}

export function plural(n, word) {
  return `${n.toLocaleString("en")} ${word}${n === 1 ? "" : "s"}`;
}
