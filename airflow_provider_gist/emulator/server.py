"""Run the emulator in-process (a background thread with its own event loop) or as a child process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from .app import EMULATOR_KEY, Emulator, EmulatorConfig, build_app


class EmulatorServer:
    """An emulator on 127.0.0.1 served from a daemon thread.

    ``port=0`` (the default here, unlike the CLI) picks a free port; read it back from ``.port``.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig(port=0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._app: web.Application | None = None
        self.port: int = 0

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:54321``; the API lives under ``/v1.3``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1.3"

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def emulator(self) -> Emulator:
        """Direct access for white-box tests; mutate it only while no request is in flight."""
        if self._app is None:
            raise RuntimeError("the emulator is not running")
        return self._app[EMULATOR_KEY]

    def start(self, timeout: float = 10.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._thread = threading.Thread(target=self._serve, name="twelvelabs-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the emulator did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the emulator failed to start: {self._error}") from self._error
        return self

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._setup())
        except BaseException as exc:  # surfaced to start()'s caller
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._teardown())
            loop.close()

    async def _setup(self) -> None:
        self._app = build_app(self.config)
        self._runner = web.AppRunner(self._app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.config.port)
        await site.start()
        address = self._runner.addresses[0]
        self.port = int(address[1])

    async def _teardown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Self:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_emulator(**config: Any) -> EmulatorServer:
    """Start an in-process emulator; keywords are :class:`EmulatorConfig` fields (port defaults to 0)."""
    config.setdefault("port", 0)
    return EmulatorServer(EmulatorConfig(**config)).start()


class EmulatorProcess:
    """The CLI in a child process, for benchmarks that must not share the client's GIL or event loop."""

    def __init__(
        self, args: list[str] | None = None, *, api_key: str = "tlk_emulator_key", timeout: float = 20.0
    ):
        self.api_key = api_key
        cmd = [sys.executable, "-m", "airflow_provider_gist.emulator", "--port", "0"]
        # Through the environment, not argv, so the key does not show up in process listings.
        env = {**os.environ, "TWELVELABS_EMULATOR_API_KEY": api_key}
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        self.proc = subprocess.Popen(  # noqa: S603 - fixed interpreter and module, no shell
            [*cmd, *(args or [])], stdout=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None
        found: list[str] = []
        reader = threading.Thread(
            target=lambda: found.append(self.proc.stdout.readline() if self.proc.stdout else "")
        )
        reader.start()
        reader.join(timeout)
        line = found[0].strip() if found else ""
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the emulator process did not report its URL (got {line!r})")
        self.url = line
        self.port = int(line.rsplit(":", 1)[1])
        self.pid = self.proc.pid

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1.3"

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
