"""Serving the API: a socket bound before anything is printed, then uvicorn on it until SIGINT/SIGTERM."""

from __future__ import annotations

import socket
import sys

import uvicorn

from bucketrun.api.app import create_app
from bucketrun.api.settings import ApiSettings
from dispatcher.runtime.settings import Settings


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host``:``port`` (0: a free port), so connections queue from now on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def serve(settings: Settings, api: ApiSettings) -> None:
    """Serve until stopped; prints ``bucketrun api listening on http://HOST:PORT`` once it accepts."""
    app = create_app(settings, api)  # raises DefinitionsBucketError before anything listens
    if api.services_dir is None and api.services_secret is None:
        sys.stderr.write(
            "warning: neither BUCKETRUN_API__SERVICES_DIR nor BUCKETRUN_API__SERVICES_SECRET is set: "
            "services created here get their buckets, notifications and ConfigMaps, but no dispatcher "
            "learns of them\n"
        )
    sock = listening_socket(api.host, api.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"bucketrun api listening on http://{shown}:{port}\n")
    sys.stderr.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
