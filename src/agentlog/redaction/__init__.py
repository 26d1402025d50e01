"""The parts of redaction (pure): credential names, the token-shape catalogue,
text walkers and multipart bodies. `agentlog.redact.Redactor` puts them together."""
