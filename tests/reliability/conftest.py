"""Fixtures of the reliability suite.

* ``ctl``: the emulator's control API (:class:`~tests.reliability.harness.EmulatorControl`) on the
  shared emulator, reset for the test and switched to the suite's distinctive API key.
* ``rel_conn``: ``twelvelabs_default`` pointing at it with that key and tight bounds (4 attempts,
  a 20 s retry deadline, a 0.75 s read timeout, so ``slow`` faults become read timeouts, and a
  4 s lookup window after a create that may have acted: lookups at 0, 0.5, 1.5, 3.5 and 4 s).
* ``gist_home``: a throwaway ``AIRFLOW_HOME`` holding the embedded SQLite gist store.
* ``fast_backoff``: the retry policy's exponential backoff divided by 20. Only our own waits
  shrink; a server's ``Retry-After`` is still honoured to the second.
* ``no_key_in_output`` (autouse): after every test of the suite, the API key must appear in
  nothing it logged (stdlib records at every level from DEBUG up, and everything written to
  stdout/stderr).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import twelvelabs_conn_json
from tests.reliability.harness import SECRET_KEY, EmulatorControl


@pytest.fixture
def ctl(emu) -> Iterator[EmulatorControl]:
    control = EmulatorControl(emu)
    control.restore_key(SECRET_KEY)
    yield control
    control.clear_faults()
    control.restore_key(SECRET_KEY)


@pytest.fixture
def rel_conn(ctl, monkeypatch) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        twelvelabs_conn_json(
            ctl.url,
            api_key=SECRET_KEY,
            max_attempts=4,
            retry_deadline=20,
            read_timeout=0.75,
            analyze_timeout=0.75,
            connect_timeout=2,
            # a create that may have acted is looked for this long before another is made
            create_lookup_seconds=4,
        ),
    )
    return "twelvelabs_default"


@pytest.fixture
def gist_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "airflow_home"
    home.mkdir()
    monkeypatch.setenv("AIRFLOW_HOME", str(home))
    return home


@pytest.fixture
def fast_backoff(monkeypatch) -> None:
    from airflow_provider_gist.client.retry import RetryPolicy

    original = RetryPolicy.backoff

    def quick(self: RetryPolicy, attempt: int, *args, **kwargs) -> float:
        return original(self, attempt, *args, **kwargs) / 20

    monkeypatch.setattr(RetryPolicy, "backoff", quick)


#: Airflow's own DEBUG line, not the provider's (docs/reliability.md, "Known upstream leak"): under
#: ``dag.test()`` the in-process supervisor logs every message a task sends, the MaskSecret
#: that registers the connection's password included. Real workers log "(body omitted)".
UPSTREAM_DEBUG_LEAK = ("Sending request", "MaskSecret(")


def key_leaks(text: str) -> list[str]:
    """The lines of ``text`` holding the API key (or a fragment), but for the known upstream line."""
    return [
        line
        for line in text.splitlines()
        if any(secret in line for secret in (SECRET_KEY, SECRET_KEY[4:-4]))
        and not all(marker in line for marker in UPSTREAM_DEBUG_LEAK)
    ]


@pytest.fixture(autouse=True)
def no_key_in_output(caplog, capfd) -> Iterator[None]:
    # DEBUG: a key logged at debug level is a leak too, but caplog only sees records that the
    # loggers let through, and Airflow gives its loggers explicit levels when it configures
    # logging (on import). So import it first, then lower every level that filters our records.
    import airflow.settings  # noqa: F401

    caplog.set_level(logging.DEBUG)
    for name in ("airflow", "airflow.task", "airflow.task.hooks", "airflow_provider_gist"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield
    out, err = capfd.readouterr()
    leaks = key_leaks(caplog.text + out + err)
    assert leaks == [], f"the API key appeared in the test's log or console output: {leaks[:3]}"
