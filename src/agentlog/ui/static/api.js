// The JSON API (docs/ui-api.md). Every URL the page links to is built here
// from ids checked against their shapes, never taken from journal text.

import { apiParams } from "./query.js";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function getJson(path, params) {
  const query = params && params.toString() ? `?${params}` : "";
  const response = await fetch(`${path}${query}`, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail ?? detail;
    } catch {
      // not JSON: keep the status text
    }
    throw new ApiError(response.status, String(detail));
  }
  return response.json();
}

const EXCHANGE_ID = /^[0-9A-Za-z]{26}$/;
const CAPTURE_ID = /^[0-9]{8}_[0-9]{6}(_[0-9]+)?$/;
// `--session` takes any name: only plain ones become a path segment.
const SESSION_ID = /^(?!\.\.?$)[0-9A-Za-z._:-]{1,128}$/;

function checked(id, shape) {
  if (typeof id !== "string" || !shape.test(id)) throw new Error("not an id");
  return encodeURIComponent(id);
}

export const isExchangeId = (id) => typeof id === "string" && EXCHANGE_ID.test(id);
export const isSessionId = (id) => typeof id === "string" && SESSION_ID.test(id);
export const isCaptureId = (id) => typeof id === "string" && CAPTURE_ID.test(id);

export const api = {
  exchanges: (filters, extra) => getJson("/api/exchanges", apiParams(filters, extra)),
  exchange: (id) => getJson(`/api/exchanges/${checked(id, EXCHANGE_ID)}`),
  conversation: (id) => getJson(`/api/exchanges/${checked(id, EXCHANGE_ID)}/conversation`),
  sessionConversation: (id) => getJson(`/api/sessions/${checked(id, SESSION_ID)}/conversation`),
  domains: (session) => getJson("/api/domains", apiParams({ session })),
  sessions: () => getJson("/api/sessions"),
  captures: () => getJson("/api/captures"),
  status: () => getJson("/api/status"),
};

export const links = {
  exchangePcap: (id) => `/api/exchanges/${checked(id, EXCHANGE_ID)}/pcap`,
  sessionPcap: (id) => `/api/sessions/${checked(id, SESSION_ID)}/pcap`,
  body: (id, which) =>
    `/api/exchanges/${checked(id, EXCHANGE_ID)}/bodies/${which === "request" ? "request" : "response"}`,
  capture: (id) => `/api/captures/${checked(id, CAPTURE_ID)}`,
  sessionView: (id) => `/?view=conversations&session=${checked(id, SESSION_ID)}`,
  har: (filters) => {
    const params = apiParams(filters);
    return params.toString() ? `/api/har?${params}` : "/api/har";
  },
  live: (filters, lastSeq) => `/api/live?${apiParams(filters, { last_event_id: lastSeq })}`,
};
