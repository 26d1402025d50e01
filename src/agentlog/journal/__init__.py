"""The event journal: requests.jsonl, append-only and HMAC-chained."""
