"""The web page in real headless Chromium (Debian's chromium, driven by Playwright), and
seed 002's DownloadProgressManager client code running in it against our server."""

from __future__ import annotations

import asyncio
import os
import random
import socket
from pathlib import Path

import aiohttp
import pytest
from conftest import REPO
from hubkit import build_hub
from managerkit import manager_settings
from serverkit import running_server
from webkit import ARGS, chromium, page_server

from downloader.settings import MiB
from downloader.testing.origin import Origin

pytestmark = pytest.mark.slow
ARTIFACTS = Path(os.environ.get("MODELHAUL_ARTIFACTS", REPO / "artifacts"))
# evil.example answers 127.0.0.1 in this browser: another site, and a rebinding name.
EVIL_ARGS = [*ARGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"]

# What a page on another site tries: simple requests need no preflight (text/plain bodies,
# body-less POSTs), the rest must ask first; their answers are opaque to it either way.
EVIL_PAGE = """<!doctype html><title>evil</title><script>
window.attack = async ([target, id]) => {
  const tries = [
    fetch(`${target}/api/v1/downloads`, {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"}, body: JSON.stringify({url: `${target}/x`})}),
    fetch(`${target}/local/download`, {method: "POST", mode: "no-cors",
      headers: {"Content-Type": "text/plain"},
      body: JSON.stringify({repo_id: "org/tiny", filename: "model-Q4_K_M.gguf"})}),
    fetch(`${target}/api/v1/downloads/${id}/pause`, {method: "POST", mode: "no-cors"}),
    fetch(`${target}/api/v1/downloads/${id}`, {method: "DELETE"}),
    fetch(`${target}/api/v1/downloads`),
  ];
  return (await Promise.allSettled(tries)).map((r) => r.status);
};
</script>"""

# Seed 002's SSE helper, as its documentation gives it (types removed: this runs as JS).
SEED_002_CLIENT = """
class DownloadProgressManager {
  constructor() { this.eventSource = null; this.listeners = new Map(); }
  connect(baseUrl = 'http://127.0.0.1:8000') {
    this.eventSource = new EventSource(`${baseUrl}/local/download/status`);
    this.eventSource.onmessage = (event) => {
      const status = JSON.parse(event.data);
      const listener = this.listeners.get(status.download_id);
      if (listener) { listener(status); }
      if (['completed', 'failed', 'cancelled'].includes(status.status)) {
        this.listeners.delete(status.download_id);
      }
    };
    this.eventSource.onerror = () => {
      setTimeout(() => { this.disconnect(); this.connect(baseUrl); }, 5000);
    };
  }
  subscribe(downloadId, callback) { this.listeners.set(downloadId, callback); }
  unsubscribe(downloadId) { this.listeners.delete(downloadId); }
  disconnect() { this.eventSource?.close(); this.eventSource = null; }
}
window.seen = []; window.lines = []; window.done = null;
const manager = new DownloadProgressManager();
manager.connect(location.origin);
async function startDownload(repoId, filename) {
  const response = await fetch('/local/download', {
    method: 'POST', headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({repo_id: repoId, filename: filename})
  });
  return await response.json();
}
const { download_id } = await startDownload('org/tiny', 'model-Q4_K_M.gguf');
manager.subscribe(download_id, (status) => {
  window.seen.push(status);
  window.lines.push(`Download ${status.download_id}: ${status.progress_percent.toFixed(1)}%`);
  if (status.status === 'completed') { window.done = status.local_file_path; }
  if (status.status === 'failed') { window.done = 'failed: ' + status.error_message; }
});
return download_id;
"""


@pytest.fixture
async def browser():
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def evil_browser():
    async with chromium(EVIL_ARGS) as browser:
        yield browser


@pytest.fixture
async def evil_site():
    """Another site's page (served on another port, as http://evil.example:PORT/)."""
    async with page_server(EVIL_PAGE) as port:
        yield f"http://evil.example:{port}/"


@pytest.fixture
async def site(tmp_path: Path):
    hub = await asyncio.to_thread(build_hub, tmp_path / "hub", cdn_throttle=2 * MiB)
    data = random.Random(12).randbytes(24 * MiB)
    async with hub, Origin({"model.bin": data}, throttle=MiB) as origin:
        settings = manager_settings(
            tmp_path / "home",
            downloads=tmp_path / "root",
            hf_endpoint=hub.endpoint,
            hf_cache=tmp_path / "hfcache",
            connections=2,  # 12 s for the 24 MiB file: time to pause even on a busy machine
        )
        async with running_server(settings) as (url, _):
            yield url, origin, data, tmp_path


async def width(item) -> float:
    return float(
        (await item.locator(".bar > div").get_attribute("style")).split(":")[1].strip(" %;")
    )


async def test_add_watch_pause_resume_and_complete_in_a_real_browser(browser, site) -> None:
    url, origin, data, tmp_path = site
    page = await browser.new_page(viewport={"width": 1100, "height": 800})
    await page.goto(url)
    await page.wait_for_selector("#connection:has-text('live')")
    # only the chosen kind's fields show
    assert await page.locator("input[name=url]").is_visible()
    assert not await page.locator("input[name=repo]").is_visible()
    await page.check("input[value=ollama]")
    assert await page.locator("input[name=model]").is_visible()
    assert not await page.locator("input[name=url]").is_visible()
    await page.check("input[value=url]")
    await page.fill("input[name=url]", origin.url("model.bin"))
    await page.fill("input[name=dest]", "web/")
    await page.click("button[type=submit]")
    item = page.locator("li.download").first
    await item.locator(".state:has-text('downloading')").wait_for(timeout=10_000)
    # Which worker runs it: this server's own manager, on this host.
    await item.locator(f".worker:has-text('worker: {socket.gethostname()} (pid ')").wait_for(
        timeout=10_000
    )

    first = await width(item)
    await page.wait_for_timeout(1500)
    second = await width(item)
    assert second > first, "the bar did not move"
    # (shown once bytes have moved for a second: on a loaded machine a moment may pass)
    await item.locator(".speed:has-text('MB/s')").wait_for(timeout=10_000)
    await item.locator(".eta:has-text('ETA')").wait_for(timeout=10_000)

    await item.locator("button[data-action=pause]").click()
    await item.locator(".state:has-text('paused')").wait_for(timeout=5_000)
    assert await item.locator("button[data-action=resume]").is_enabled()
    assert not await item.locator("button[data-action=pause]").is_enabled()

    await item.locator("button[data-action=resume]").click()
    await item.locator(".state:has-text('completed')").wait_for(timeout=60_000)
    assert await item.locator(".percent").inner_text() == "100.0%"
    await item.locator(f".worker:has-text('files on {socket.gethostname()}')").wait_for()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "web-page.png"), full_page=True)

    phone = await browser.new_page(viewport={"width": 375, "height": 740})
    await phone.goto(url)
    await phone.locator("li.download .state:has-text('completed')").wait_for()
    overflow = await phone.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not overflow, "the page is wider than a phone's screen"
    await phone.screenshot(path=str(ARTIFACTS / "web-page-phone.png"), full_page=True)
    assert (tmp_path / "root" / "web" / "model.bin").read_bytes() == data


async def test_seed_002_client_code_receives_its_events_in_the_browser(browser, site) -> None:
    url, *_ = site
    page = await browser.new_page()
    await page.goto(url)
    download_id = await page.evaluate(f"async () => {{ {SEED_002_CLIENT} }}")
    await page.wait_for_function("window.done !== null", timeout=60_000)
    seen = await page.evaluate("window.seen")
    lines = await page.evaluate("window.lines")
    done = await page.evaluate("window.done")
    assert seen and all(s["download_id"] == download_id for s in seen)
    assert seen[-1]["status"] == "completed" and not done.startswith("failed")
    assert done.endswith("/model-Q4_K_M.gguf") and "snapshots" in done
    assert lines[-1] == f"Download {download_id}: 100.0%"
    assert any(s["status"] == "downloading" for s in seen)


async def _downloading(url: str, source: str) -> int:
    async with aiohttp.ClientSession(url) as http:
        async with http.post("/api/v1/downloads", json={"url": source}) as r:
            task_id = (await r.json())["id"]
        async with asyncio.timeout(20):
            while True:
                async with http.get(f"/api/v1/downloads/{task_id}") as r:
                    if (await r.json())["state"] == "downloading":
                        return task_id
                await asyncio.sleep(0.05)


async def _downloads(url: str) -> list[tuple[int, str]]:
    async with aiohttp.ClientSession(url) as http, http.get("/api/v1/downloads") as r:
        return [(d["id"], d["state"]) for d in (await r.json())["downloads"]]


async def test_a_page_on_another_site_cannot_drive_the_server(
    evil_browser, evil_site, site
) -> None:
    url, origin, *_ = site
    task_id = await _downloading(url, origin.url("model.bin"))
    page = await evil_browser.new_page()
    answers = []
    page.on(
        "response",
        lambda r: (
            answers.append((r.request.method, r.url, r.status)) if r.url.startswith(url) else None
        ),
    )
    await page.goto(evil_site)
    await page.evaluate("(args) => window.attack(args)", [url, task_id])
    assert await _downloads(url) == [(task_id, "downloading")]  # nothing queued, paused, cut
    # The browser did send the simple ones, and the server refused each for the page's
    # origin (the DELETE waits on a preflight, and the page may not read the GET's answer).
    seen = {(method, path.removeprefix(url)) for method, path, _ in answers}
    assert {
        ("POST", "/api/v1/downloads"),
        ("POST", "/local/download"),
        ("POST", f"/api/v1/downloads/{task_id}/pause"),
    } <= seen, answers
    assert {status for *_, status in answers} == {403}, answers


async def test_a_rebinding_name_gets_nothing_from_the_server(evil_browser, site) -> None:
    url, origin, *_ = site
    task_id = await _downloading(url, origin.url("model.bin"))
    port = url.rsplit(":", 1)[1]
    page = await evil_browser.new_page()
    # The attacker's name now answers 127.0.0.1: to the browser, the API is same-origin.
    response = await page.goto(f"http://evil.example:{port}/")
    assert response.status == 403 and "HOST_NOT_ALLOWED" in await response.text()
    statuses = await page.evaluate(
        """async (id) => [
          (await fetch("/api/v1/downloads")).status,
          (await fetch("/api/v1/events")).status,
          (await fetch(`/api/v1/downloads/${id}/pause`, {method: "POST"})).status,
          (await fetch("/api/v1/downloads", {method: "POST",
            headers: {"Content-Type": "application/json"},
            body: JSON.stringify({url: "http://127.0.0.1:9/x"})})).status,
        ]""",
        task_id,
    )
    assert statuses == [403, 403, 403, 403]
    assert await _downloads(url) == [(task_id, "downloading")]
    # the same server under a loopback name is the user's own page, and works
    response = await page.goto(f"http://localhost:{port}/")
    assert response.status == 200
    await page.wait_for_selector("#connection:has-text('live')")
    await page.locator(f"li.download[data-id='{task_id}']").wait_for()
