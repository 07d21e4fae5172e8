"""A manual run from the real UI, in headless Chromium, against a real local deployment.

``scripts/airflow-local.sh up`` starts the emulator, api-server, scheduler, dag-processor and
triggerer in a throwaway home on free loopback ports; the test logs in, triggers ``gist_manual``
through the Trigger form, waits for the run (REST), then reads the gist in the run's *Gists* tab
and in the gist view. It also types a bad asset id and checks the form refuses it, naming the
field. Everything started is stopped (``down``: SIGTERM to the recorded PIDs).

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and Playwright for Python
(``pip install playwright``; never ``playwright install``). Screenshots of failures go to
``.artifacts/``; ``GIST_E2E_DOC_SCREENSHOTS=1`` also refreshes docs/images/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
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
        GIST_VENV=str(Path(sys.executable).resolve().parents[1])
        if "GIST_VENV" not in env
        else env["GIST_VENV"],
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
    assert view.locator("article.gist h2").first.inner_text() == TITLE
    _doc_screenshot(page, "gist-view.png")

    # The JSON endpoint behind the view, with the same API credentials as the REST API.
    listing = deployment.api("GET", "/gists/api/gists", params={"text": "harbour"}).json()
    assert [g["title"] for g in listing["gists"]] == [TITLE]
    assert requests.get(f"{deployment.url}/gists/api/gists", timeout=15).status_code == 401
