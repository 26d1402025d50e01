"""The UI process: the indexer thread, the FastAPI app behind the Guard, uvicorn."""

import signal
import socket
import sys
import threading
from pathlib import Path

import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from agentlog import __version__
from agentlog.errors import UserError
from agentlog.logsdir import LogsDir
from agentlog.ui.api import router
from agentlog.ui.auth import Guard, host_allowed, read_or_create_token
from agentlog.ui.index import Indexer
from agentlog.ui.store import Store

STATIC = Path(__file__).resolve().parent / "static"


def create_app(store: Store, static: Path = STATIC) -> FastAPI:
    app = FastAPI(
        title="agentlog ui",
        version=__version__,
        openapi_url="/api/openapi.json",
        docs_url=None,  # the docs pages load scripts from a CDN: not here
        redoc_url=None,
    )
    app.include_router(router(store))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        index = static / "index.html"
        if not index.is_file():
            raise HTTPException(404, "the page is not installed")
        return FileResponse(index, media_type="text/html")

    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")
    return app


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by each connection: a response's head and body go out at once, not
    # 40 ms apart (Nagle against the client's delayed ACK).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.set_inheritable(True)
    return sock


def serve(logs: LogsDir, listen: tuple[str, int]) -> int:
    if not logs.root.is_dir():
        raise UserError(f"no logs directory at {logs.root}")
    token = read_or_create_token(logs)
    indexer = Indexer(logs)
    indexer.open()
    sock = bind(*listen)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    thread = threading.Thread(target=indexer.run, name="indexer", daemon=True)
    thread.start()
    app = Guard(create_app(Store(logs, indexer)), token, listen_host=host)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
    )
    if not host_allowed(shown, "localhost"):
        print(
            f"agentlog ui: warning: listening on {shown}, beyond this machine; "
            "prefer 127.0.0.1 and an SSH tunnel",
            file=sys.stderr,
        )
    print(f"agentlog ui: http://{shown}:{port}/?token={token}", file=sys.stderr, flush=True)
    # uvicorn stops on SIGTERM and then raises it again under the handler it found:
    # with this one in place, a SIGTERM is a clean exit (0), as for the proxy.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        indexer.stop()
        thread.join(10)
        indexer.close()
    return 0
