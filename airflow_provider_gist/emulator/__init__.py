"""A local emulator of the TwelveLabs v1.3 API for tests and benchmarks.

It shares no code with the client modules of this package, so it can catch their mistakes,
and it needs only the standard library and aiohttp. It does not understand video: every
"analysis" is derived deterministically from the filename. See docs/emulator.md.
"""

from .app import DEFAULT_API_KEY, DEFAULT_PORT, EmulatorConfig, build_app
from .server import EmulatorProcess, EmulatorServer, start_emulator

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_PORT",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorServer",
    "build_app",
    "start_emulator",
]
