"""Fixtures of the reliability suite.

* ``ctl``: the emulator's control API (:class:`~tests.reliability.harness.EmulatorControl`) on the
  shared emulator, reset for the test and switched to the suite's distinctive API key.
* ``rel_conn``: ``twelvelabs_default`` pointing at it with that key and tight bounds (4 attempts,
  a 20 s retry deadline, a 0.75 s read timeout, so ``slow`` faults become read timeouts).
* ``gist_home``: a throwaway ``AIRFLOW_HOME`` holding the embedded SQLite gist store.
* ``fast_backoff``: the retry policy's exponential backoff divided by 20. Only our own waits
  shrink; a server's ``Retry-After`` is still honoured to the second.
* ``no_key_in_output`` (autouse): after every test of the suite, the API key must appear in
  nothing it logged (stdlib records and everything written to stdout/stderr).
"""

from __future__ import annotations

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


@pytest.fixture(autouse=True)
def no_key_in_output(caplog, capfd) -> Iterator[None]:
    yield
    out, err = capfd.readouterr()
    captured = caplog.text + out + err
    for secret in (SECRET_KEY, SECRET_KEY[4:-4]):
        assert secret not in captured, "the API key appeared in the test's log or console output"
