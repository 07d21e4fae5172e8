"""A manual run from the real UI, in headless Chromium, against a real local deployment.

``scripts/airflow-local.sh up`` starts the emulator, api-server, scheduler, dag-processor and
triggerer in a throwaway home on free loopback ports; the test logs in, triggers ``gist_manual``
through the Trigger form, waits for the run (REST), then reads the gist in the run's *Gists* tab
and in the gist view. It also types a bad asset id and checks the form refuses it, naming the
field. After a catalog refresh of the same index it browses the catalog view: the index's stats
and latest refresh, the charts, a thumbnail (or its placeholder), a click on a topic bar, and
the CSV export checked against the store. Everything started is stopped (``down``: SIGTERM to
the recorded PIDs).

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and Playwright for Python
(``pip install playwright``; never ``playwright install``). Screenshots of failures go to
``.artifacts/``; ``GIST_E2E_DOC_SCREENSHOTS=1`` also refreshes docs/images/.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / ".artifacts"
DOC_IMAGES = REPO / "docs" / "images"
VIDEO_URL = "https://videos.example.com/sunrise_harbour_fishing.mp4"
TITLE = "Sunrise Harbour Fishing"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DIALOG = "[data-scope=dialog][data-part=content][data-state=open]"

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

try:
    import playwright.sync_api as pw_api
except ImportError:  # pragma: no cover - depends on the machine
    pw_api = None  # type: ignore[assignment]

if not CHROMIUM.exists():
    pytest.skip(
        "needs /usr/bin/chromium (apt-get install -y chromium); browser downloads are not used",
        allow_module_level=True,
    )
if pw_api is None:
    pytest.skip("needs Playwright for Python (pip install playwright)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Deployment:
    url: str
    home: Path
    username: str
    password: str
    token: str

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=15, **kwargs)


def _script_env(home: Path, api_port: int, emu_port: int) -> dict[str, str]:
    # The tests' own Airflow settings (AIRFLOW_HOME, DB, DAGS_FOLDER...) must not leak into it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        GIST_LOCAL_HOME=str(home),
        GIST_LOCAL_PORT=str(api_port),
        GIST_EMULATOR_PORT=str(emu_port),
        # the interpreter running the tests already has the project installed
        # (sys.prefix is the venv; resolving sys.executable would give the base interpreter)
        GIST_VENV=env.get("GIST_VENV", sys.prefix),
        GIST_EMULATOR_ARGS="--asset-ready-seconds 0.5 --indexing-seconds 1 "
        "--analysis-startup-seconds 0.5 --analysis-seconds-per-minute 0.2",
        GIST_HEALTH_TIMEOUT="150",
    )
    return env


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    home = Path(tempfile.mkdtemp(prefix="gist-e2e-airflow-"))
    api_port, emu_port = _free_port(), _free_port()
    env = _script_env(home, api_port, emu_port)
    script = REPO / "scripts" / "airflow-local.sh"
    try:
        up = subprocess.run(["bash", str(script), "up"], env=env, capture_output=True, text=True, timeout=300)
        if up.returncode != 0:
            pytest.fail(
                f"airflow-local.sh up failed:\n{up.stdout}\n{up.stderr}\nlogs: {home}/logs/components"
            )
        url = f"http://127.0.0.1:{api_port}"
        password = json.loads((home / "simple_auth_manager_passwords.json").read_text())["admin"]
        resp = requests.post(
            f"{url}/auth/token", json={"username": "admin", "password": password}, timeout=15
        )
        resp.raise_for_status()
        dep = Deployment(url, home, "admin", password, resp.json()["access_token"])
        _wait_for_dag(dep)
        yield dep
    finally:
        subprocess.run(["bash", str(script), "down"], env=env, capture_output=True, text=True, timeout=120)
        shutil.rmtree(home, ignore_errors=True)


def _wait_for_dag(dep: Deployment, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = dep.api("GET", "/api/v2/dags/gist_manual")
        if resp.ok:
            return
        time.sleep(1)
    errors = dep.api("GET", "/api/v2/importErrors").text
    pytest.fail(f"gist_manual was not parsed in {timeout}s; import errors: {errors[:2000]}")


def _run_ids(dep: Deployment) -> set[str]:
    resp = dep.api("GET", "/api/v2/dags/gist_manual/dagRuns", params={"limit": 100})
    resp.raise_for_status()
    return {run["dag_run_id"] for run in resp.json()["dag_runs"]}


def _wait_for_new_run(dep: Deployment, before: set[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = _run_ids(dep) - before
        if new:
            return new.pop()
        time.sleep(0.5)
    raise AssertionError("the Trigger form created no DAG run")


def _wait_for_run(dep: Deployment, run_id: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        state = dep.api("GET", f"/api/v2/dags/gist_manual/dagRuns/{run_id}").json()["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(2)
    raise AssertionError(f"run {run_id} still {state} after {timeout}s")


@pytest.fixture
def page(deployment: Deployment, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A logged-in page in a fresh Chromium profile; a screenshot lands in .artifacts/ on failure."""
    assert pw_api is not None
    profile = tempfile.mkdtemp(prefix="gist-e2e-chromium-")
    with pw_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
            accept_downloads=True,
        )
        context.set_default_timeout(30_000)
        pg = context.new_page()
        try:
            pg.goto(f"{deployment.url}/auth/login?next=/dags/gist_manual")
            pg.fill("input[name=username]", deployment.username)
            pg.fill("input[name=password]", deployment.password)
            pg.keyboard.press("Enter")
            pg.wait_for_selector("[data-testid=trigger-dag-button]")
            yield pg
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is None or report.failed:
                ARTIFACTS.mkdir(exist_ok=True)
                pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _open_trigger_form(page: Any) -> Any:
    page.click("[data-testid=trigger-dag-button]")
    dialog = page.locator(DIALOG)
    dialog.wait_for()
    page.locator("#element_video_urls").wait_for()
    return dialog


def _doc_screenshot(target: Any, name: str) -> None:
    if os.environ.get("GIST_E2E_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        target.screenshot(path=str(DOC_IMAGES / name))


def test_trigger_form_refuses_a_bad_asset_id(deployment: Deployment, page: Any) -> None:
    before = _run_ids(deployment)
    dialog = _open_trigger_form(page)
    page.fill("#element_asset_ids", "6298d673f1090f1100476d4c\nbad id!")
    page.click("[data-testid=trigger-dag-submit]")
    error = dialog.get_by_text("Invalid input for param asset_ids")
    error.wait_for()
    assert "'bad id!' does not match" in dialog.inner_text()
    assert page.locator(DIALOG).is_visible()  # still open: nothing was triggered
    assert _run_ids(deployment) == before


def test_manual_run_from_the_trigger_form(deployment: Deployment, page: Any) -> None:
    before = _run_ids(deployment)
    _open_trigger_form(page)
    page.fill("#element_video_urls", VIDEO_URL)
    # Gist parts: keep Title and Hashtags, drop Topics.
    page.locator("#element_types [aria-label='Remove Topics']").click()
    assert page.locator("#element_types").get_by_text("Topics").count() == 0
    _doc_screenshot(page.locator(DIALOG), "trigger-form.png")
    page.click("[data-testid=trigger-dag-submit]")

    run_id = _wait_for_new_run(deployment, before)
    conf = deployment.api("GET", f"/api/v2/dags/gist_manual/dagRuns/{run_id}").json()["conf"]
    assert conf["video_urls"] == [VIDEO_URL]
    assert conf["types"] == ["title", "hashtag"]
    assert _wait_for_run(deployment, run_id) == "success"

    # The run's Gists tab: the summary the last task left for this run.
    page.goto(f"{deployment.url}/dags/gist_manual/runs/{run_id}")
    page.get_by_role("link", name="Gists", exact=True).click()
    frame = page.frame_locator("iframe")
    frame.get_by_text(TITLE).wait_for()
    tab_text = frame.locator("body").inner_text()
    assert "#SunriseHarbourFishing" in tab_text
    assert VIDEO_URL in tab_text
    assert frame.locator("[data-kind=topics]").count() == 0  # topics were not requested

    # The gist view, from the UI's navigation (Browse > Gists, framed in the UI).
    page.goto(f"{deployment.url}/plugin/gists")
    view = page.frame_locator("iframe")
    view.get_by_text(TITLE).first.wait_for()
    view.locator("input[name=text]").fill("#harbour")
    view.get_by_role("button", name="Filter").click()
    view.locator("article.gist").first.wait_for()
    # (the emulator's seeded catalog, refreshed on schedule, may have harbour videos too)
    assert TITLE in view.locator("article.gist h2").all_inner_texts()
    _doc_screenshot(page, "gist-view.png")

    # The JSON endpoint behind the view, with the same API credentials as the REST API.
    listing = deployment.api("GET", "/gists/api/gists", params={"text": "harbour"}).json()
    assert TITLE in [g["title"] for g in listing["gists"]]
    for gist in listing["gists"]:
        words = [gist.get("title") or "", *gist.get("topics", []), *gist.get("hashtags", [])]
        assert any("harbour" in word.lower() for word in words), gist
    assert requests.get(f"{deployment.url}/gists/api/gists", timeout=15).status_code == 401


def _trigger(dep: Deployment, dag_id: str, conf: dict[str, Any]) -> str:
    resp = dep.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
    resp.raise_for_status()
    return str(resp.json()["dag_run_id"])


def _wait(dep: Deployment, dag_id: str, run_id: str, timeout: float = 180) -> str:
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        state = dep.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        if state in ("success", "failed"):
            return state
        time.sleep(2)
    raise AssertionError(f"{dag_id} run {run_id} still {state} after {timeout}s")


def _refresh_the_manual_index(dep: Deployment) -> str:
    """A successful catalog refresh of gist_manual's index; its run id.

    The DAG runs one run at a time: a scheduled run (of the emulator's seeded catalog) is given
    a minute to finish, and one still going after that (say, waiting to retry) is ended, so
    this one does not queue behind it.
    """
    dag = "gist_catalog_refresh"
    dep.api("PATCH", f"/api/v2/dags/{dag}", json={"is_paused": False}).raise_for_status()

    def active() -> list[str]:
        runs = dep.api("GET", f"/api/v2/dags/{dag}/dagRuns", params={"limit": 100}).json()["dag_runs"]
        return [run["dag_run_id"] for run in runs if run["state"] not in ("success", "failed")]

    deadline = time.monotonic() + 60
    while active() and time.monotonic() < deadline:
        time.sleep(2)
    for stuck in active():
        dep.api("PATCH", f"/api/v2/dags/{dag}/dagRuns/{stuck}", json={"state": "failed"})
    run_id = _trigger(dep, dag, {"index": "gist-manual", "concurrency": 2})
    assert _wait(dep, dag, run_id) == "success"
    return run_id


def _ensure_a_manual_gist(dep: Deployment) -> None:
    """The manual run test stored one; alone, this test triggers its own run through REST."""
    if dep.api("GET", "/gists/api/gists", params={"index_id": None}).json()["gists"]:
        return
    run_id = _trigger(dep, "gist_manual", {"video_urls": [VIDEO_URL]})
    assert _wait(dep, "gist_manual", run_id) == "success"


def _stored_gists(dep: Deployment) -> dict[str, dict[str, Any]]:
    """The rows of the deployment's store (the embedded SQLite file under LocalExecutor)."""
    with sqlite3.connect(dep.home / "gists.db") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT video_ref, title, topics, hashtags, model, generated_at FROM video_gists")
        return {row["video_ref"]: dict(row) for row in rows}


def test_catalog_view_stats_chart_thumbnail_topic_filter_and_csv(deployment: Deployment, page: Any) -> None:
    _ensure_a_manual_gist(deployment)
    refresh_run = _refresh_the_manual_index(deployment)

    page.goto(f"{deployment.url}/plugin/gists")
    view = page.frame_locator("iframe")
    view.locator("table.indexes").wait_for()

    # the stats: the refreshed index, its gists, stale count and latest refresh with its run link
    run_link = view.locator(f"td.last-run a[href*='{refresh_run.split('__')[0]}']").first
    run_link.wait_for()
    row = view.locator("tr[data-index]", has=run_link)
    assert int(row.locator("td[data-gists]").get_attribute("data-gists") or 0) >= 1
    assert row.locator("td[data-stale]").inner_text().split()[0] == "0"
    assert "generated" in row.locator("td.did").inner_text()
    assert refresh_run in run_link.inner_text()

    # the charts, and a thumbnail that loaded (the emulator's thumbnails: the placeholder)
    bars = view.locator("[data-chart=topic] a.bar")
    assert bars.count() >= 1
    assert view.locator("[data-chart=calls] .day").count() >= 1
    thumb = view.locator("img.thumb").first
    thumb.wait_for()
    assert thumb.evaluate("img => img.complete && img.naturalWidth > 0")
    _doc_screenshot(page, "gist-catalog.png")

    # a click on the biggest topic's bar filters the list by that topic
    term = bars.first.get_attribute("data-term") or ""
    bars.first.click()
    view.locator("[data-active=topic]").wait_for()
    cards = view.locator("article.gist")
    assert cards.count() >= 1
    for n in range(cards.count()):
        chips = cards.nth(n).locator("[data-kind=topics] .chip").all_inner_texts()
        assert term in chips, (term, chips)
    listed = {cards.nth(n).get_attribute("data-video-ref") for n in range(cards.count())}
    _doc_screenshot(page, "gist-catalog-topic.png")

    # the CSV of this filter: exactly the store's gists with that topic, field by field
    with page.expect_download() as download:
        view.get_by_role("link", name="CSV", exact=True).click()
    path = download.value.path()
    with open(path, newline="", encoding="utf-8") as handle:
        exported = list(csv.DictReader(handle))
    stored = {
        ref: g for ref, g in _stored_gists(deployment).items() if term in json.loads(g["topics"] or "[]")
    }
    assert {r["video_ref"] for r in exported} == set(stored) == listed
    for row_ in exported:
        gist = stored[row_["video_ref"]]
        assert row_["title"] == (gist["title"] or "")
        assert row_["topics"] == "; ".join(json.loads(gist["topics"]))
        assert row_["model"] == gist["model"] and row_["generated_at"] == gist["generated_at"]
