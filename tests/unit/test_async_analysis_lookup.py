"""A lost analysis-task create is looked for over the connection's window (``create_lookup_seconds``).

When ``POST /analyze/tasks`` fails in a way that may have created the task (a read timeout, a
gateway page), the task is looked up by its ``custom_id`` before anything else, for as long as
the connection says: a deployment whose API lists new tasks late sets a longer window, one that
must not hold a worker for a minute a shorter one. Time is faked: the pauses are recorded.
"""

from __future__ import annotations

import pytest
import requests
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_gist.async_analysis import STATE_KEY_ANALYSIS_TASK
from airflow_provider_gist.errors import GistTransientError
from tests.conftest import twelvelabs_conn_json
from tests.unit import ingest_fakes
from tests.unit.ingest_fakes import FakeStore, make_context
from tests.unit.test_generate_deferrable import API, BASE, FakeTasks, op

lookup_time = ingest_fakes.lookup_time


def window(monkeypatch, seconds: float) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_TWELVELABS_DEFAULT",
        twelvelabs_conn_json(BASE, max_attempts=2, create_lookup_seconds=seconds),
    )


# Lookups at once, then after pauses doubling from 0.5 s, the last one cut to the window's end.
@pytest.mark.parametrize(
    ("seconds", "pauses"),
    [(2, [0.5, 1.0, 0.5]), (6, [0.5, 1.0, 2.0, 2.5])],
)
def test_a_create_that_timed_out_is_looked_for_over_the_connections_window(
    requests_mock, monkeypatch, lookup_time, seconds, pauses
):
    window(monkeypatch, seconds)
    tasks = FakeTasks(requests_mock)
    requests_mock.post(f"{API}/analyze/tasks", exc=requests.exceptions.ReadTimeout("slow"))
    with pytest.raises(GistTransientError, match=rf"not listed within {seconds}s"):
        op(deferrable=True).execute(make_context(FakeStore()))
    assert lookup_time.sleeps == pauses
    assert tasks.creates == 1  # never sent twice in the try: the task retry looks again first


def test_a_task_listed_late_within_the_window_is_found_not_created_again(
    requests_mock, monkeypatch, lookup_time
):
    """The create made the task but a gateway answered 504; the listing shows it at 3.5 s."""
    window(monkeypatch, 6)
    tasks = FakeTasks(requests_mock)
    made = {}

    def create_then_gateway(request, context):
        made.update(tasks._create(request, context))
        context.status_code = 504
        return "<html>504 Gateway Time-out</html>"

    def listing(request, context):
        late = lookup_time.now < 3.5
        return {"data": [] if late else [tasks._view(made["task_id"])], "page_info": {"total_page": 1}}

    requests_mock.post(f"{API}/analyze/tasks", text=create_then_gateway)
    requests_mock.get(f"{API}/analyze/tasks", json=listing)
    store = FakeStore()
    with pytest.raises(TaskDeferred):
        op(deferrable=True).execute(make_context(store))
    assert lookup_time.sleeps == [0.5, 1.0, 2.0]
    assert tasks.creates == 1
    assert store.data[STATE_KEY_ANALYSIS_TASK]["id"] == made["task_id"]
