"""Run mitmproxy with agentlog's addons (the `agentlog proxy` command's engine).

Import this module only after commands.proxy.prepare_keylog(): mitmproxy reads
MITMPROXY_SSLKEYLOGFILE once, when it is first imported.
"""

import asyncio
import hmac
import signal
import ssl
import sys
import time
from pathlib import Path

from mitmproxy import master, options
from mitmproxy.addons import (
    block,
    core,
    disable_h2c,
    dns_resolver,
    next_layer,
    proxyserver,
    tlsconfig,
)

from agentlog import ca, records
from agentlog.capture.supervisor import CaptureError, CaptureSupervisor
from agentlog.config import ProxyConfig
from agentlog.errors import UserError
from agentlog.ids import new_id
from agentlog.journal.writer import JournalWriter
from agentlog.logsdir import LogsDir, read_or_create_key
from agentlog.proxy.addons import Pipeline
from agentlog.proxy.addons.dial_by_name import DialByName
from agentlog.proxy.addons.lifecycle import Lifecycle
from agentlog.proxy.addons.policy_gate import PolicyGate
from agentlog.proxy.addons.recorder import Recorder
from agentlog.proxy.addons.router import Router
from agentlog.redact import Redactor


class StartupError(UserError):
    """The proxy could not start; the message is one line for the user."""


def _mode(kind: str, addr: tuple[str, int]) -> str:
    host, port = addr
    return f"{kind}@{host}:{port}"  # mitmproxy splits at the last colon: no brackets for IPv6


def mitmproxy_addons() -> list:
    """The part of mitmproxy's default addons a recording proxy needs.

    agentlog records; it does not rewrite, replay, intercept or serve pages, so
    the addons for those are left out: each would cost every event a little,
    and none should touch an agent's traffic.
    """
    return [
        core.Core(),
        block.Block(),
        disable_h2c.DisableH2C(),
        proxyserver.Proxyserver(),
        dns_resolver.DnsResolver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
    ]


def upstream_trust(logs: LogsDir, extra_ca: Path | None) -> Path:
    """The system's trust store, plus --upstream-ca if given, as one bundle."""
    system = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not system.exists():
        import certifi

        system = Path(certifi.where())
    bundle = logs.mitmproxy_confdir / "upstream-trust.pem"
    parts = [system.read_bytes()]
    if extra_ca is not None:
        try:
            parts.append(extra_ca.read_bytes())
        except OSError as e:
            raise StartupError(f"cannot read --upstream-ca {extra_ca}: {e.strerror}") from e
    bundle.write_bytes(b"\n".join(parts))
    return bundle


def _capture(
    config: ProxyConfig, logs: LogsDir, writer: JournalWriter, session: str
) -> CaptureSupervisor | None:
    if config.capture is None:
        return None

    def record(action: str, **fields: object) -> None:
        writer.append(
            records.capture_event(
                id=new_id(), session=session, ts=time.time(), action=action, **fields
            )
        )

    return CaptureSupervisor(logs, config.capture, record)


async def serve(config: ProxyConfig, logs: LogsDir) -> None:
    ca.ensure_ca(logs)
    journal_key = read_or_create_key(config.journal_key or logs.journal_key)
    # Fingerprints use a key of their own, derived from the journal key.
    fingerprint_key = hmac.digest(journal_key, b"agentlog redaction fingerprint", "sha256")
    redactor = Redactor(fingerprint_key if config.fingerprint else None)
    session = config.session or new_id()
    writer = JournalWriter(logs, journal_key, redactor, config.body_cap)
    writer.start()
    capture = _capture(config, logs, writer, session)
    lifecycle = Lifecycle(
        writer, session, f"CA {logs.ca_cert} SHA-256 {ca.fingerprint(logs.ca_cert)}"
    )
    try:
        if capture is not None:  # before listening: never run half-blind
            try:
                await capture.start()
            except CaptureError as e:
                raise StartupError(str(e)) from e
        opts = options.Options()
        proxy = master.Master(opts, with_termlog=True)  # warnings and addon errors
        proxy.addons.add(*mitmproxy_addons())
        recorder = Recorder(
            writer,
            redactor,
            session,
            config.body_cap,
            pcap_file=capture.file_for if capture else None,
        )
        proxy.addons.add(
            Pipeline(
                DialByName(), PolicyGate(config.policy), Router(config.routes), recorder, lifecycle
            )
        )
        modes = [_mode("regular", config.listen)]
        if config.transparent:
            modes.append(_mode("transparent", config.transparent))
        opts.update(
            mode=modes,
            confdir=str(logs.mitmproxy_confdir),
            connection_strategy="lazy",
            termlog_verbosity="warn",
            ssl_verify_upstream_trusted_ca=str(upstream_trust(logs, config.upstream_ca)),
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, proxy.shutdown)
        await proxy.run()
        if lifecycle.failure:
            raise StartupError(lifecycle.failure)
    finally:
        if capture is not None:
            await capture.stop()
        writer.close()
        seq, mac = writer.head
        if lifecycle.serving:
            print(
                f"agentlog proxy: stopped; journal head seq={seq} hmac={mac}",
                file=sys.stderr,
                flush=True,
            )
