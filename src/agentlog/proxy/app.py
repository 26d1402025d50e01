"""mitmproxy's Master with agentlog's addons: how the proxy is assembled.

The service (proxy/service.py) starts, runs and stops what is built here.
"""

import os
import ssl
from collections.abc import Callable
from pathlib import Path

from mitmproxy import exceptions, master, options
from mitmproxy.addons import (
    block,
    core,
    disable_h2c,
    dns_resolver,
    next_layer,
    proxyserver,
    tlsconfig,
)
from mitmproxy.net import tls

from agentlog.config import ProxyConfig
from agentlog.errors import StartupError
from agentlog.journal.sink import EventSink
from agentlog.logsdir import SECRET_MODE, LogsDir
from agentlog.proxy.addons import Pipeline
from agentlog.proxy.addons.connection_guard import ConnectionGuard
from agentlog.proxy.addons.dial_by_name import DialByName
from agentlog.proxy.addons.dns import DnsGate, DnsRecorder, use_lenient_dns_layer
from agentlog.proxy.addons.lifecycle import Lifecycle
from agentlog.proxy.addons.policy_gate import PolicyGate
from agentlog.proxy.addons.recorder import Recorder
from agentlog.proxy.addons.router import Router
from agentlog.proxy.addons.stream_guard import StreamGuard
from agentlog.proxy.addons.tally import Tally
from agentlog.proxy.addons.tcp_recorder import TcpRecorder
from agentlog.proxy.dialer import Dialer
from agentlog.proxy.keylog import KeyLog, Note
from agentlog.redact import Redactor

__all__ = ["StartupError", "build_master", "log_tls_keys", "mitmproxy_addons", "upstream_trust"]


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
    bundle = logs.upstream_trust
    parts = [system.read_bytes()]
    if extra_ca is not None:
        try:
            parts.append(extra_ca.read_bytes())
        except OSError as e:
            raise StartupError(f"cannot read --upstream-ca {extra_ca}: {e.strerror}") from e
    bundle.write_bytes(b"\n".join(parts))
    return bundle


def log_tls_keys(path: Path, note: Note) -> KeyLog:
    """Make mitmproxy hand both TLS legs' secrets to a KeyLog on `path` (0600), whenever
    mitmproxy was imported.

    mitmproxy reads MITMPROXY_SSLKEYLOGFILE once, when mitmproxy.net.tls is first
    imported, and bakes the logger into the TLS contexts it caches; so the logger
    is set here, and contexts made for another are dropped.
    """
    if not path.exists():
        path.touch(mode=SECRET_MODE)  # there from the start, never readable by others
    os.chmod(path, SECRET_MODE)
    keylog = KeyLog(path, note)
    keylog.install()
    tls.create_proxy_server_context.cache_clear()
    tls.create_client_proxy_context.cache_clear()
    return keylog


def build_master(
    config: ProxyConfig,
    logs: LogsDir,
    sink: EventSink,
    redactor: Redactor,
    lifecycle: Lifecycle,
    pcap_file: Callable[[str | None, float], str | None] | None,
) -> master.Master:
    """mitmproxy's Master, configured, with our addons; on the running loop, not yet run.

    mitmproxy keeps the Master in a process-wide `ctx`: one per process.
    """
    opts = options.Options()
    proxy = master.Master(opts, with_termlog=True)  # warnings and addon errors
    dialer = Dialer(config.policy, config.routes)  # checks and dials the same address
    addons = mitmproxy_addons()
    if config.dns:
        use_lenient_dns_layer()
        # The gate goes just before mitmproxy's resolver (a refused or routed name is never
        # looked up), with it as one chain entry: an entry of its own would cost every
        # event of every request, DNS or not.
        resolver = next(a for a in addons if isinstance(a, dns_resolver.DnsResolver))
        gate = DnsGate(config.policy, dialer.routes)
        addons[addons.index(resolver)] = Pipeline(gate, resolver, name="dns")
    proxy.addons.add(*addons)
    tally = Tally(sink)  # what the guards cut off, counted
    proxy.addons.add(
        Pipeline(
            ConnectionGuard(config.limits, tally),
            StreamGuard(config.limits, tally),
            DialByName(),
            PolicyGate(config.policy, dialer),
            Router(dialer),
            Recorder(sink, redactor, config.body_cap, pcap_file=pcap_file),
            TcpRecorder(sink, redactor, pcap_file=pcap_file),
            DnsRecorder(sink),
            lifecycle,
            tally,
        )
    )
    modes = [_mode("regular", config.listen)]
    if config.transparent:
        modes.append(_mode("transparent", config.transparent))
    if config.dns:
        modes.append(_mode("dns", config.dns))
    try:
        opts.update(
            mode=modes,
            confdir=str(logs.mitmproxy_confdir),
            connection_strategy="lazy",
            termlog_verbosity="warn",
            ssl_verify_upstream_trusted_ca=str(upstream_trust(logs, config.upstream_ca)),
        )
    except exceptions.OptionsError as e:  # two listeners on one address, say
        raise StartupError(str(e)) from None
    return proxy
