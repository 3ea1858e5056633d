"""Nothing deleted without asking: ``cache rm/evict/clear`` show what they will remove and ask
(``--yes`` skips it, ``--dry-run`` only shows, no terminal means no), and by default touch only
what modelhaul downloaded; ``--all`` adds the models other tools put in the same caches. All
through the real CLI, over caches the real huggingface_hub client also writes to."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import select
import struct
import subprocess
import termios
from dataclasses import dataclass
from pathlib import Path

import pytest
from clikit import MODELHAUL, cli_env
from clikit import run as cli
from hubkit import build_hub, real_client

from downloader.cache import ModelCache
from downloader.settings import Settings
from downloader.sources.hfcache import storage_folder
from downloader.testing.modelfiles import gguf_bytes
from downloader.testing.ollama import MODEL_LAYER, Registry
from downloader.testing.origin import Origin

TEMPLATE = "application/vnd.ollama.image.template"


@pytest.fixture
async def hub(tmp_path: Path):
    hub = await asyncio.to_thread(build_hub, tmp_path / "hub")
    async with hub:
        yield hub


@dataclass
class Caches:
    """A ledger and the three stores, and the environment that points the CLI at them."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def hf(self) -> Path:
        return self.root / "hf"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def ollama(self) -> Path:
        return self.root / "ollama"

    def env(self, **more: str) -> dict[str, str]:
        return {
            "HF_HUB_CACHE": str(self.hf),
            "MODELHAUL_DOWNLOADS": str(self.downloads),
            "OLLAMA_MODELS": str(self.ollama),
            "NO_COLOR": "1",
            **more,
        }

    def files(self) -> set[Path]:
        """Every file and link of a model in the three stores (not huggingface_hub's own
        lock files and cache tag)."""
        return {
            Path(folder) / name
            for store in (self.hf, self.downloads, self.ollama)
            for folder, _, names in os.walk(store)
            for name in names
            if Path(folder) != self.hf and self.hf / ".locks" not in Path(folder).parents
        }

    def settings(self) -> Settings:
        return Settings.from_env({"MODELHAUL_HOME": str(self.home), **self.env()})


def hf_download(caches: Caches, hub, repo: str, filename: str) -> None:
    """What ``hf download`` does: the real huggingface_hub fills the same cache."""
    code = f"from huggingface_hub import hf_hub_download; hf_hub_download({repo!r}, {filename!r})"
    result = real_client(code, HF_ENDPOINT=hub.endpoint, HF_HUB_CACHE=str(caches.hf))
    assert result.returncode == 0, result.stderr


def hf_scan(caches: Caches) -> dict:
    """huggingface_hub's own view of its cache: repos, their files, any inconsistency."""
    code = (
        "import json\nfrom huggingface_hub import scan_cache_dir\ninfo = scan_cache_dir()\n"
        "print(json.dumps({'warnings': [str(w) for w in info.warnings], 'repos': {r.repo_id: "
        "sorted(f.file_name for v in r.revisions for f in v.files) for r in info.repos}}))"
    )
    result = real_client(code, HF_HUB_CACHE=str(caches.hf))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def mixed_caches(tmp_path: Path, hub) -> Caches:
    """Modelhaul's downloads beside other tools': in the HF cache, org/tiny's Q8 GGUF is
    modelhaul's and its config.json huggingface_hub's; mlx-community/small is all
    huggingface_hub's; in the download folder, m.bin is modelhaul's and theirs.bin not."""
    caches = Caches(tmp_path)
    got = await cli(
        caches.home, "get", "hf://org/tiny/model-Q8_0.gguf", **caches.env(HF_ENDPOINT=hub.endpoint)
    )
    assert got.code == 0, got.stderr
    await asyncio.to_thread(hf_download, caches, hub, "org/tiny", "config.json")
    await asyncio.to_thread(hf_download, caches, hub, "mlx-community/small", "config.json")
    async with Origin({"m.bin": b"m" * 50_000}) as origin:
        got = await cli(caches.home, "get", origin.url("m.bin"), **caches.env())
    assert got.code == 0, got.stderr
    (caches.downloads / "theirs.bin").write_bytes(b"t" * 70_000)
    return caches


def tiny_q8(caches: Caches, hub) -> set[Path]:
    """org/tiny's Q8 GGUF in the HF cache: its blob and its snapshot link."""
    folder = storage_folder(caches.hf, "org/tiny")
    commit = hub.repos["org/tiny"].refs["main"]
    blob = hub.file("org/tiny", "model-Q8_0.gguf").lfs_sha256
    return {folder / "blobs" / blob, folder / "snapshots" / commit / "model-Q8_0.gguf"}


async def test_cache_ls_says_who_downloaded_each_model(tmp_path: Path, hub) -> None:
    caches = await mixed_caches(tmp_path, hub)
    listed = await cli(caches.home, "cache", "ls", "--json", **caches.env())
    assert listed.code == 0, listed.stderr
    assert {m["name"]: m["by"] for m in listed.json()} == {
        "org/tiny": "mixed",
        "mlx-community/small": "other",
        "m.bin": "modelhaul",
        "theirs.bin": "other",
    }


async def test_clear_removes_only_what_modelhaul_downloaded_and_all_adds_the_rest(
    tmp_path: Path, hub
) -> None:
    caches = await mixed_caches(tmp_path, hub)
    before = caches.files()
    cleared = await cli(caches.home, "cache", "clear", "--yes", "--json", **caches.env())
    assert cleared.code == 0, cleared.stderr
    assert sorted(m["name"] for m in cleared.json()) == ["m.bin", "org/tiny"]
    assert before - caches.files() == {*tiny_q8(caches, hub), caches.downloads / "m.bin"}
    # What huggingface_hub downloaded is still there, and its cache still reads cleanly.
    assert hf_scan(caches) == {
        "warnings": [],
        "repos": {"org/tiny": ["config.json"], "mlx-community/small": ["config.json"]},
    }

    nothing = await cli(caches.home, "cache", "clear", **caches.env())  # no question to ask
    assert nothing.code == 0, nothing.stderr
    assert "nothing to delete (only what modelhaul downloaded; --all for" in nothing.stdout

    everything = await cli(caches.home, "cache", "clear", "--all", "--yes", **caches.env())
    assert everything.code == 0, everything.stderr
    assert caches.files() == set()


async def test_rm_takes_names_as_cache_ls_shows_them_and_spares_other_tools_models(
    tmp_path: Path, hub
) -> None:
    caches = await mixed_caches(tmp_path, hub)
    before = caches.files()
    refused = await cli(caches.home, "cache", "rm", "mlx-community/small", "--yes", **caches.env())
    assert refused.code == 1
    assert "mlx-community/small was downloaded by another tool" in refused.stderr
    assert "--all" in refused.stderr and caches.files() == before

    removed = await cli(caches.home, "cache", "rm", "org/tiny", "m.bin", "--yes", **caches.env())
    assert removed.code == 0, removed.stderr
    assert before - caches.files() == {*tiny_q8(caches, hub), caches.downloads / "m.bin"}

    theirs = await cli(
        caches.home, "cache", "rm", "mlx-community/small", "theirs.bin", "--all", "--yes",
        **caches.env(),
    )  # fmt: skip
    assert theirs.code == 0, theirs.stderr
    assert not storage_folder(caches.hf, "mlx-community/small").exists()
    assert not (caches.downloads / "theirs.bin").exists()

    unknown = await cli(caches.home, "cache", "rm", "nobody/nothing", "--yes", **caches.env())
    assert unknown.code == 1
    assert "'nobody/nothing' is neither a name 'modelhaul cache ls' shows" in unknown.stderr


async def test_a_spec_still_names_a_model_to_remove(tmp_path: Path, hub) -> None:
    caches = await mixed_caches(tmp_path, hub)
    before = caches.files()
    removed = await cli(
        caches.home, "cache", "rm", "hf://org/tiny/model-Q8_0.gguf", "--yes", **caches.env()
    )
    assert removed.code == 0, removed.stderr
    assert before - caches.files() == tiny_q8(caches, hub)


async def test_without_a_terminal_nothing_is_deleted_unless_yes(tmp_path: Path, hub) -> None:
    caches = await mixed_caches(tmp_path, hub)
    before = caches.files()
    for args in (("clear",), ("clear", "--all"), ("evict", "--max-size", "1K"), ("rm", "m.bin")):
        refused = await cli(caches.home, "cache", *args, **caches.env())  # stdin: /dev/null
        assert refused.code == 1, (args, refused.stdout)
        assert "pass --yes to delete" in refused.stderr, refused.stderr
        assert caches.files() == before


async def test_a_dry_run_shows_exactly_what_yes_then_removes(tmp_path: Path, hub) -> None:
    caches = await mixed_caches(tmp_path, hub)
    before = caches.files()
    args = ("cache", "evict", "--max-size", "1K", "--all")
    shown = await cli(caches.home, *args, "--dry-run", "--json", **caches.env())
    assert shown.code == 0, shown.stderr
    plan = shown.json()
    assert caches.files() == before
    planned = {Path(p) for r in plan["remove"] for p in r["paths"]}
    assert planned == before  # --all: every model goes (nothing is held by a task)

    text = await cli(caches.home, "cache", "clear", "--dry-run", **caches.env())
    assert text.code == 0, text.stderr
    assert "(a dry run: nothing was deleted)" in text.stdout
    assert "org/tiny" in text.stdout and "(modelhaul's files of it)" in text.stdout
    assert "mlx-community/small" not in text.stdout and caches.files() == before

    done = await cli(caches.home, *args, "--yes", "--json", **caches.env())
    assert before - caches.files() == planned
    assert [m["name"] for m in done.json()["evicted"]] == [r["name"] for r in plan["remove"]]


async def test_the_model_cache_api_spares_other_tools_models_by_default(
    tmp_path: Path, hub
) -> None:
    caches = await mixed_caches(tmp_path, hub)
    async with ModelCache(caches.settings()) as cache:
        result = await cache.evict_to_fit(0)
        assert sorted(m.name for m in result.evicted) == ["m.bin", "org/tiny"]
        assert not result.fits  # other tools' models are left
        left = {m.name: m.by for m in await cache.cached_models()}
        assert left == {"org/tiny": "other", "mlx-community/small": "other", "theirs.bin": "other"}
        assert len(await cache.clear_cache()) == 0
        assert len(await cache.clear_cache(others=True)) == 3
    assert caches.files() == set()


async def test_an_ollama_layer_another_tool_s_model_uses_stays_for_it(tmp_path: Path) -> None:
    caches = Caches(tmp_path)
    shared = gguf_bytes(size=40_000, seed=1)
    with socket_port() as no_daemon:
        async with Registry(tmp_path / "registry") as registry:
            layers = [(MODEL_LAYER, shared), (TEMPLATE, b"{{ .Prompt }}")]
            registry.add_model("library/tiny", layers, tag="a")
            env = caches.env(MODELHAUL_OLLAMA_REGISTRY=registry.url, OLLAMA_HOST=no_daemon)
            got = await cli(caches.home, "get", "ollama://tiny:a", **env)
    assert got.code == 0, got.stderr
    # Another tool's model (as `ollama pull` leaves one) that uses the same weights layer.
    theirs = ollama_model(caches.ollama, "theirs", {"shared": shared, "other": b"their template"})
    before = caches.files()
    [ours] = [p for p in before if p.parts[-2:] == ("tiny", "a")]
    layers = json.loads(ours.read_text())
    our_blobs = {
        caches.ollama / "blobs" / layer["digest"].replace(":", "-")
        for layer in [*layers["layers"], layers["config"]]
    }
    cleared = await cli(caches.home, "cache", "clear", "--yes", "--json", **env)
    assert cleared.code == 0, cleared.stderr
    assert [m["name"] for m in cleared.json()] == [f"{registry.url[7:]}/library/tiny:a"]
    # Our manifest and our layers, but the weights another tool's model also uses stay.
    assert before - caches.files() == {ours, *our_blobs} - theirs
    assert len(our_blobs & theirs) == 1 and theirs <= caches.files()
    assert theirs <= caches.files()
    everything = await cli(caches.home, "cache", "rm", "theirs:latest", "--all", "--yes", **env)
    assert everything.code == 0, everything.stderr
    assert caches.files() == set()


# --- the question, asked in a real terminal ---------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    code: int
    before_answer: str  # what the terminal showed up to the question
    after_answer: str


def converse(home: Path, args: list[str], answer: str, env: dict[str, str]) -> Conversation:
    """Run ``modelhaul ARGS`` in a terminal (a pty of 250 columns), wait for its question,
    type ``answer`` and Enter, and read it to the end."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
    proc = subprocess.Popen(
        [MODELHAUL, *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        # rich believes COLUMNS/LINES over the terminal's own size: set them to the pty's.
        env=cli_env(home, **{**env, "COLUMNS": "250", "LINES": "50"}),
    )
    os.close(slave)
    try:
        before = _read(master, until=b"[y/N] ")
        os.write(master, answer.encode() + b"\r")
        after = _read(master, until=None)
        return Conversation(proc.wait(timeout=60), before, after)
    finally:
        proc.kill()
        os.close(master)


def _read(fd: int, until: bytes | None, timeout: float = 60) -> str:
    data = b""
    while until is None or until not in data:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"no more output after {data.decode(errors='replace')!r}"
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the other side closed: the command ended
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").replace("\r\n", "\n")


async def test_in_a_terminal_no_keeps_everything_and_yes_removes_exactly_what_was_shown(
    tmp_path: Path, hub
) -> None:
    caches = await mixed_caches(tmp_path, hub)
    before = caches.files()
    args = ["cache", "clear"]
    no = await asyncio.to_thread(converse, caches.home, args, "n", caches.env())
    assert no.code == 1 and "nothing deleted" in no.after_answer
    assert caches.files() == before
    shown = no.before_answer
    assert "to delete, 2 models (only what modelhaul downloaded; --all for other tools' too):" in (
        shown
    )
    assert "Delete 2 models (" in shown
    rows = [line.split() for line in shown.splitlines() if line.startswith("  ")]
    assert sorted(row[0] for row in rows) == ["m.bin", "org/tiny"]

    planned = await cli(caches.home, *args, "--dry-run", "--json", **caches.env())
    yes = await asyncio.to_thread(converse, caches.home, args, "y", caches.env())
    assert yes.code == 0, yes.after_answer
    assert yes.before_answer == shown  # the same question, the same models
    gone = before - caches.files()
    assert gone == {Path(p) for r in planned.json()["remove"] for p in r["paths"]}
    assert gone == {*tiny_q8(caches, hub), caches.downloads / "m.bin"}


# --- helpers ------------------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def ollama_model(store: Path, name: str, layers: dict[str, bytes]) -> set[Path]:
    """A model as ``ollama pull`` leaves it (blobs and a manifest); returns its files."""
    (store / "blobs").mkdir(parents=True, exist_ok=True)
    entries, files = [], set()
    for data in layers.values():
        digest = sha256_hex(data)
        blob = store / "blobs" / f"sha256-{digest}"
        if not blob.exists():
            blob.write_bytes(data)
        files.add(blob)
        entries.append({"mediaType": MODEL_LAYER, "digest": f"sha256:{digest}", "size": len(data)})
    manifest = store / "manifests" / "registry.ollama.ai" / "library" / name / "latest"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "layers": entries}))
    return {*files, manifest}


class socket_port:
    """A local address where nothing listens (no Ollama daemon)."""

    def __enter__(self) -> str:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return f"127.0.0.1:{s.getsockname()[1]}"

    def __exit__(self, *exc: object) -> None:
        return None
