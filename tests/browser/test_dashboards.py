"""The dashboards in a real browser: Debian's headless Chromium driven by Playwright.

Data from the example app (``examples/support_app.py``) sent through the SDK to a live lgmon:
its CLI for steady traffic, and its graph run in-process for the users of an A/B test between
two registered versions. Then a version activation, an alert firing and resolving, system
metric points. The browser logs in through the admin's login form, opens every dashboard and
the experiment's results, waits for Chart.js to draw, and checks that every canvas holds a
chart with data and painted pixels, that the console stayed free of errors and that no request
left localhost. Screenshots go to ``test-output/screenshots/``.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; Playwright's own browser downloads
are never used). Without it the tests are skipped, unless ``CI`` is set: then they fail.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from django.utils import timezone

from lgmon_client import Client, LangGraphMonitor, Sender
from lgmon_client.definition import graph_definition
from monitoring import rollups, system
from monitoring.models import Alert, AlertRule, GraphRun, MetricPoint
from tests.conftest import make_key
from versioning import services
from versioning.models import Experiment, GraphVersion

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "support_app.py"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}
GRAPH = "support-bot"
EXPERIMENT_USERS = 30


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the browser tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_api() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed: pip install -e '.[dev]'")
    # Started per test, after the data is in: Playwright's sync API runs an event loop in this
    # thread, and the ORM refuses to run where one is running.
    yield sync_playwright


# --- data ------------------------------------------------------------------------------------


def _run_example_cli(url: str, runs: int) -> None:
    _, key = make_key("ingest", name="demo")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--runs", str(runs), "--rate", "0", "--seed", "11"],
        env={"LGMON_URL": url, "LGMON_API_KEY": key, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _experiment_through_the_sdk(url: str) -> Experiment:
    """v1 (the example's graph) and v2 registered by the SDK, an A/B test between them started
    through the API, and its users served by the example's graph, reported by the SDK."""
    from examples.support_app import QUESTIONS, FlakyBackend, build_graph

    _, manage_key = make_key("manage", "read", name="deployer")
    client = Client(url, manage_key)
    bot = build_graph()
    v1 = client.register(bot, name=GRAPH, source="demo-1")
    changed = {**graph_definition(bot), "description": "v2: a longer reply"}
    v2 = client.register(changed, name=GRAPH, source="demo-2")
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {manage_key}"
    created = api.post(
        f"{url}/api/v1/experiments/",
        json={
            "graph": GRAPH,
            "key": "longer-reply",
            "min_units": 10,
            "variants": [
                {"name": "control", "version": v1["number"], "weight": 0.5},
                {"name": "treatment", "version": v2["number"], "weight": 0.5},
            ],
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    started = api.post(f"{url}/api/v1/experiments/longer-reply/start/", timeout=10)
    assert started.status_code == 200, started.text

    _, ingest_key = make_key("ingest", name="app")
    sender = Sender(url, ingest_key, flush_interval=0.05)
    monitor = LangGraphMonitor(sender)
    for index in range(EXPERIMENT_USERS):
        user = f"ab-user-{index}"
        client.resolve(GRAPH, user_id=user)
        with contextlib.suppress(FlakyBackend):  # the app sees its errors; lgmon records them
            bot.invoke(
                {"question": QUESTIONS[index % len(QUESTIONS)], "docs": []},
                config={"callbacks": [monitor], "metadata": {"user_id": user}},
            )
    assert sender.flush(timeout=10)
    sender.close(timeout=5)
    return Experiment.objects.get(key="longer-reply")


def _events_alerts_and_metrics() -> None:
    now = timezone.now()
    v2 = GraphVersion.objects.get(graph__name=GRAPH, number=2)
    services.activate(v2, actor="alice", reason="roll out v2", now=now - timedelta(minutes=8))
    rule = AlertRule.objects.create(
        name="support-bot error rate", metric="error_rate", scope="graph", graph=GRAPH,
        threshold=0.05,
    )  # fmt: skip
    labels = {"alertname": rule.name, "graph": GRAPH}
    Alert.objects.create(
        rule=rule, fingerprint="firing", labels=labels, state="firing", value=0.12,
        active_at=now - timedelta(minutes=6), fired_at=now - timedelta(minutes=5),
    )  # fmt: skip
    Alert.objects.create(
        rule=rule, fingerprint="resolved", labels={**labels, "node": "lookup_account"},
        state="inactive", fired_at=now - timedelta(minutes=40),
        resolved_at=now - timedelta(minutes=25),
    )  # fmt: skip
    for minutes in range(3, 0, -1):  # this host's own samples, as the beat task takes them
        system.sample(now - timedelta(minutes=minutes))
    MetricPoint.objects.bulk_create(
        MetricPoint(
            name=name,
            timestamp=now - timedelta(minutes=minute, seconds=15),
            value=base + (minute * 7) % 23,
            labels={"host": "worker-2"},
        )
        for minute in range(60)
        for name, base in ((system.CPU_PERCENT, 20.0), (system.MEMORY_PERCENT, 55.0))
    )


@pytest.fixture
def demo(live_server: Any, admin_user: Any) -> dict[str, Any]:
    experiment = _experiment_through_the_sdk(live_server.url)
    _run_example_cli(live_server.url, runs=30)
    rollups.apply_pending()
    _events_alerts_and_metrics()
    assert GraphRun.objects.filter(graph__name=GRAPH).count() == 30 + EXPERIMENT_USERS
    return {"experiment_id": experiment.pk, "username": "alice", "password": "pw"}


# --- the browser ---------------------------------------------------------------------------


class Watch:
    """Everything the page reports that a test must see: console errors, uncaught exceptions,
    requests to other hosts, failed requests."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        self.hosts: set[str] = set()
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("request", self._request)
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            location = message.location.get("url", "") if message.location else ""
            if location.endswith("/favicon.ico"):  # the admin has none; the browser asks
                return
            self.errors.append(f"console: {message.text} ({location})")

    def _request(self, request: Any) -> None:
        url = urlparse(request.url)
        if url.scheme in ("data", "blob", "about"):
            return
        self.hosts.add(url.hostname or "")
        if url.hostname not in LOCAL_HOSTS:
            self.foreign.append(request.url)


CHARTS_JS = """
() => Array.from(document.querySelectorAll("canvas")).map((canvas) => {
  const chart = window.Chart ? Chart.getChart(canvas) : undefined;
  let painted = 0;
  if (canvas.width && canvas.height) {
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 3; i < pixels.length; i += 4) { if (pixels[i] !== 0) { painted++; } }
  }
  const datasets = chart ? chart.data.datasets : [];
  const isPoint = (p) => p !== null && typeof p === "object" && !Array.isArray(p);
  const values = (ds) => ds.data.map((p) => (isPoint(p) ? p.y : p));
  return {
    id: canvas.id,
    points: Number(canvas.dataset.points),
    drawn: canvas.dataset.drawn === undefined ? null : Number(canvas.dataset.drawn),
    hasChart: Boolean(chart),
    lengths: datasets.map((ds) => ds.data.length),
    filled: datasets.map((ds) => values(ds).filter((v) => v !== null && v !== undefined).length),
    painted: painted,
  };
})
"""


def _open(page: Any, url: str, name: str) -> list[dict[str, Any]]:
    """Open a dashboard, wait for its charts, save a screenshot; what each canvas holds."""
    response = page.goto(url)
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    page.wait_for_selector("body[data-charts-drawn='true']", timeout=15_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    canvases: list[dict[str, Any]] = page.evaluate(CHARTS_JS)
    assert canvases, f"{name}: no canvas"
    for canvas in canvases:
        where = f"{name} #{canvas['id']}"
        assert canvas["hasChart"], f"{where}: Chart.js drew nothing"
        assert canvas["lengths"] and canvas["lengths"][0] > 0, f"{where}: no data points"
        assert canvas["lengths"][0] == canvas["points"] == canvas["drawn"], where
        assert canvas["painted"] > 0, f"{where}: blank canvas"
    return canvases


def _by_id(canvases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {canvas["id"]: canvas for canvas in canvases}


def test_every_dashboard_draws_its_charts_offline(
    playwright_api: Any, live_server: Any, demo: dict[str, Any]
) -> None:
    base = live_server.url
    with playwright_api() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            watch = Watch(page)

            # Log in through the admin's form, as a person would.
            page.goto(f"{base}/admin/dashboards/")
            assert "/admin/login/" in page.url
            page.fill("#id_username", demo["username"])
            page.fill("#id_password", demo["password"])
            page.click("input[type=submit]")
            page.wait_for_url(f"{base}/admin/dashboards/")

            overview = _by_id(_open(page, f"{base}/admin/dashboards/", "overview"))
            assert {"overview-0-runs", "overview-0-errors", "overview-0-p95"} <= set(overview)
            assert overview["overview-0-runs"]["filled"][0] > 0
            assert page.locator("#overview-graphs tr.graph-row").count() >= 3  # + subgraphs
            assert page.locator("#open-alerts tr.alert-firing").count() == 1
            assert page.locator("#running-experiments").inner_text().count("longer-reply") == 1

            hour = _by_id(_open(page, f"{base}/admin/dashboards/graphs/{GRAPH}/", "graph-1h"))
            assert set(hour) == {
                "graph-throughput",
                "graph-errors",
                "graph-latency",
                "node-latency",
                "nodes-p95",
            }
            assert hour["graph-throughput"]["lengths"][0] >= 60
            assert hour["graph-latency"]["filled"] == [hour["graph-latency"]["filled"][0]] * 3
            assert hour["graph-latency"]["filled"][0] > 0
            assert len(hour["nodes-p95"]["lengths"]) >= 3  # one line per slow node
            markers = page.locator("#markers tbody tr")
            assert markers.count() >= 3  # activation(s), alert fired, alert resolved
            assert page.locator("#node-table tr.node-row").count() >= 4

            # The window picker: 24 hours, then another node from the node table.
            page.click(".window-picker a.window-24h")
            page.wait_for_selector("body[data-charts-drawn='true']")
            day = _by_id(
                _open(page, f"{base}/admin/dashboards/graphs/{GRAPH}/?window=24h", "graph-24h")
            )
            assert day["graph-throughput"]["lengths"][0] in (288, 289)
            page.click("#node-table a >> text=classify")
            page.wait_for_selector("body[data-charts-drawn='true']")
            assert "node=classify" in page.url
            assert "classify" in page.locator("#node-latency").get_attribute("aria-label")

            system_page = _by_id(_open(page, f"{base}/admin/dashboards/system/", "system"))
            assert set(system_page) == {"system-cpu", "system-memory"}
            assert len(system_page["system-cpu"]["lengths"]) == 2  # this host and worker-2
            assert max(system_page["system-memory"]["filled"]) >= 59

            results_url = f"{base}/admin/versioning/experiment/{demo['experiment_id']}/results/"
            results = _by_id(_open(page, results_url, "experiment-results"))
            assert {"results-success-rate", "results-error-rate", "results-lift"} <= set(results)
            assert results["results-error-rate"]["lengths"] == [2, 2]  # interval, estimate

            page.goto(f"{base}/admin/")
            assert page.locator("#dashboards-module a[href='/admin/dashboards/']").count() >= 1
            page.screenshot(path=str(SCREENSHOTS / "admin-index.png"), full_page=True)

            assert watch.errors == []
            assert watch.foreign == [], f"requests left localhost: {watch.foreign}"
            assert watch.hosts <= LOCAL_HOSTS
        finally:
            browser.close()
