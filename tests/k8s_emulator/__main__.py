"""`python -m tests.k8s_emulator`: serve the emulator until SIGTERM/SIGINT (see `config.build_parser`)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from aiohttp import web

from tests.k8s_emulator.config import EmulatorConfig, config_from_argv
from tests.k8s_emulator.server import Emulator, bind_socket

logger = logging.getLogger("tests.k8s_emulator")


def _write_ready_file(path: Path, url: str) -> None:
    # Written under another name and renamed, so a reader never sees half a file.
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    partial.replace(path)


async def serve(config: EmulatorConfig) -> None:
    """Run the emulator until a termination signal, then stop every pod process and exit."""
    own_state_dir = config.state_dir is None
    state_dir = config.state_dir or Path(tempfile.mkdtemp(prefix="k8s-emulator-"))
    emulator = Emulator(config, state_dir / "pods")
    emulator.start_controllers()
    runner = web.AppRunner(
        emulator.build_app(), access_log=None, handler_cancellation=True, shutdown_timeout=1.0
    )
    await runner.setup()
    sock = bind_socket(config.host, config.port)
    await web.SockSite(runner, sock).start()
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    if config.ready_file is not None:
        _write_ready_file(config.ready_file, url)
    print(f"k8s-emulator listening on {url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()
        await runner.cleanup()
        if own_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    try:
        config = config_from_argv(argv)
    except ValueError as error:
        print(f"k8s-emulator: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
