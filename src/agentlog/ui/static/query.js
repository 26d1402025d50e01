// The page's state in its URL (so a view can be bookmarked), and the API's
// filter parameters built from it. The names are the API's (docs/ui-api.md).

export const FILTERS = ["q", "domain", "method", "status", "kind", "session", "since", "until"];
export const VIEWS = ["requests", "conversations", "domains", "captures"];

// {view, open, filters: {name: value}} from a query string; empty values dropped.
export function readState(search) {
  const params = new URLSearchParams(search);
  const filters = {};
  for (const name of FILTERS) {
    const value = (params.get(name) ?? "").trim();
    if (value) filters[name] = value;
  }
  const view = VIEWS.includes(params.get("view")) ? params.get("view") : "requests";
  return { view, open: params.get("open") || null, filters };
}

// The query string of a state ("" or "?..."), in a stable order.
export function writeState({ view, open, filters }) {
  const params = new URLSearchParams();
  if (view && view !== "requests") params.set("view", view);
  for (const name of FILTERS) {
    if (filters[name]) params.set(name, filters[name]);
  }
  if (open) params.set("open", open);
  const text = params.toString();
  return text ? `?${text}` : "";
}

// API query parameters for the filters, plus `extra` (limit, before, ...).
export function apiParams(filters, extra = {}) {
  const params = new URLSearchParams();
  for (const name of FILTERS) {
    if (filters[name]) params.set(name, filters[name]);
  }
  for (const [name, value] of Object.entries(extra)) {
    if (value !== null && value !== undefined) params.set(name, String(value));
  }
  return params;
}

export function sameFilters(a, b) {
  return FILTERS.every((name) => (a[name] ?? "") === (b[name] ?? ""));
}
