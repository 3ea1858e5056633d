"""Seed 002's client on a page from another origin, in real headless Chromium, against the
real ``modelhaul serve``: with ``--cors-origin`` that origin the browser's own CORS checks
let it start a download and follow its events; without, the browser refuses."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiohttp
import pytest
from clikit import start
from hubkit import build_hub
from serverkit import free_port
from webkit import chromium, page_server

pytestmark = pytest.mark.slow
TOKEN = "cors-test-token"

# Seed 002's SSE helper as its documentation gives it (types removed), and its example
# calls with the API's base URL in front, as a page on another origin must write them.
APP_PAGE = """<!doctype html><title>app</title><script>
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
      window.streamErrors += 1;
      setTimeout(() => { this.disconnect(); this.connect(baseUrl); }, 5000);
    };
  }
  subscribe(downloadId, callback) { this.listeners.set(downloadId, callback); }
  unsubscribe(downloadId) { this.listeners.delete(downloadId); }
  disconnect() { this.eventSource?.close(); this.eventSource = null; }
}
window.seen = []; window.done = null; window.streamErrors = 0;
window.run = async (baseUrl) => {
  const manager = new DownloadProgressManager();
  manager.connect(baseUrl);
  let response;
  try {
    response = await fetch(`${baseUrl}/local/download`, {
      method: 'POST', headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({repo_id: 'org/tiny', filename: 'model-Q4_K_M.gguf'})
    });
  } catch (e) {
    return 'refused: ' + e;  // a failed preflight: the browser says only "Failed to fetch"
  }
  const { download_id } = await response.json();
  manager.subscribe(download_id, (status) => {
    window.seen.push(status);
    if (status.status === 'completed') { window.done = status.local_file_path; }
    if (status.status === 'failed') { window.done = 'failed: ' + status.error_message; }
  });
  return download_id;
};
window.list = async (baseUrl, token) => {
  const headers = token ? {'Authorization': `Bearer ${token}`} : {};
  try {
    const response = await fetch(`${baseUrl}/api/v1/downloads`, {headers});
    return response.status;
  } catch (e) {
    return 'refused';
  }
};
</script>"""


@pytest.fixture
async def browser():
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def app_site():
    """The other origin: a page on 127.0.0.1 at another port (so another origin)."""
    async with page_server(APP_PAGE) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
async def hub(tmp_path: Path):
    hub = await asyncio.to_thread(build_hub, tmp_path / "hub", cdn_throttle=4 * 1024 * 1024)
    async with hub:
        yield hub


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, hub, *args: str):
    """``modelhaul serve ARGS`` on a free port until it answers; yields its base URL."""
    port = free_port()
    proc = await start(
        tmp_path / "home",
        "serve",
        "--port",
        str(port),
        *args,
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_CACHE=str(tmp_path / "hfcache"),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(20):
            while True:
                try:
                    async with http.get(f"{url}/health", headers=_auth(args)) as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        await proc.wait()


def _auth(args: tuple[str, ...]) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"} if "--token" in args else {}


async def _tasks(url: str, args: tuple[str, ...] = ()) -> list:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/api/v1/downloads", headers=_auth(args)) as r,
    ):
        return (await r.json())["downloads"]


async def test_seed_002_on_a_listed_origin_downloads_and_follows_its_events(
    browser, app_site, hub, tmp_path
) -> None:
    async with serving(tmp_path, hub, "--cors-origin", app_site) as url:
        page = await browser.new_page()
        await page.goto(app_site)
        download_id = await page.evaluate("(base) => window.run(base)", url)
        assert not str(download_id).startswith("refused"), download_id
        await page.wait_for_function("window.done !== null", timeout=60_000)
        seen = await page.evaluate("window.seen")
        done = await page.evaluate("window.done")
        assert done.endswith("/model-Q4_K_M.gguf") and "snapshots" in done, done
        assert seen[-1]["status"] == "completed" and seen[-1]["progress_percent"] == 100
        assert all(s["download_id"] == download_id for s in seen)
        assert await page.evaluate("window.streamErrors") == 0


async def test_without_the_option_the_browser_refuses_the_other_origin(
    browser, app_site, hub, tmp_path
) -> None:
    async with serving(tmp_path, hub) as url:
        page = await browser.new_page()
        await page.goto(app_site)
        outcome = await page.evaluate("(base) => window.run(base)", url)
        assert outcome.startswith("refused: TypeError"), outcome
        await page.wait_for_function("window.streamErrors > 0", timeout=10_000)
        assert await page.evaluate("(base) => window.list(base)", url) == "refused"
        assert await page.evaluate("window.seen") == []
        assert await _tasks(url) == []  # the preflight failed: the POST was never sent


async def test_a_listed_origin_sends_the_token_through_the_preflight(
    browser, app_site, hub, tmp_path
) -> None:
    args = ("--cors-origin", app_site, "--token", TOKEN)
    async with serving(tmp_path, hub, *args) as url:
        page = await browser.new_page()
        await page.goto(app_site)
        listing = "([base, token]) => window.list(base, token)"
        assert await page.evaluate(listing, [url, TOKEN]) == 200
        assert await page.evaluate(listing, [url, "wrong"]) == 401  # readable, and refused
        assert await page.evaluate(listing, [url, None]) == 401
