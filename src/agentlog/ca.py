"""The interception CA: DIR/ca.crt (0644, the one file the agent gets) and DIR/ca.key (0600).

Created once and reused. mitmproxy reads it from its own confdir inside DIR,
where it is refreshed from ca.crt/ca.key at every start.
"""

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from agentlog.logsdir import PUBLIC_MODE, SECRET_MODE, LogsDir, create_secret_file


def ensure_ca(logs: LogsDir) -> None:
    if not logs.ca_cert.exists() or not logs.ca_key.exists():
        from mitmproxy import certs  # heavy import, only when a CA is made

        key, cert = certs.create_ca(organization="agentlog", cn="agentlog CA", key_size=2048)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        for path in (logs.ca_cert, logs.ca_key):
            path.unlink(missing_ok=True)
        create_secret_file(logs.ca_key, key_pem, SECRET_MODE)
        create_secret_file(logs.ca_cert, cert.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)
    logs.mitmproxy_ca.unlink(missing_ok=True)
    create_secret_file(logs.mitmproxy_ca, logs.ca_key.read_bytes() + logs.ca_cert.read_bytes())


def fingerprint(cert_path: Path) -> str:
    """SHA-256 of the DER certificate, colon-separated hex (as browsers show it)."""
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
