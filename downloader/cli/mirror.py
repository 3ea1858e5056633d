"""``modelhaul mirror MANIFEST``: download every entry of a manifest, crash-safe.

A manifest is either lines of ``SPEC [DEST]`` (``#`` starts a comment, quote a DEST with
spaces; a URL's mirrors follow it, each after a ``|`` standing alone:
``URL | URL2 | URL3 [DEST]``) or TOML::

    dest = "models"            # the folder of every entry (optional)
    connections = 8            # a default for every entry (optional)

    [[download]]
    spec = "hf://owner/repo"
    dest = "models/repo"       # per-entry options: dest, priority, connections, mirrors
    priority = 5

A top-level ``dest`` is always a folder: each entry's files go into it under their own names,
unless the entry gives a ``dest`` of its own. Relative destinations are relative to the
manifest's folder, so a rerun from anywhere names the same files. Every entry is one ledger
task keyed by its spec and destination: running the manifest again after a crash (or
Ctrl-C) resumes what was under way, keeps what finished and starts only what never began.
"""

from __future__ import annotations

import argparse
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from downloader.cli import exitcodes
from downloader.cli.follow import wait_with_progress
from downloader.cli.options import settings_for
from downloader.cli.output import Output
from downloader.errors import SpecError, UnsafePathError
from downloader.json_shapes import task_json
from downloader.manager import DownloadManager
from downloader.manager.tunables import check_mirrors
from downloader.paths import safe_path
from downloader.progress import format_bytes
from downloader.settings import MAX_CONNECTIONS, MAX_PRIORITY
from downloader.specs import parse_spec
from storage import TaskState

ENTRY_KEYS = {"spec", "dest", "priority", "connections", "mirrors"}


@dataclass(frozen=True)
class Entry:
    """One line (or ``[[download]]`` table) of a manifest."""

    where: str  # "manifest.txt line 7", for error messages
    spec: str
    dest: str | None = None
    priority: int = 0
    connections: int | None = None
    mirrors: tuple[str, ...] = ()  # more URLs of a URL's file

    def as_item(self) -> dict[str, Any]:
        item: dict[str, Any] = {"spec": self.spec, "priority": self.priority}
        if self.mirrors:
            item["mirrors"] = list(self.mirrors)
        if self.dest is not None:
            item["dest"] = self.dest
        if self.connections is not None:
            item["connections"] = self.connections
        return item


def read_manifest(path: Path) -> list[Entry]:
    """The entries of a manifest; a ``SpecError`` naming the line of the first bad one."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"manifest {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"cannot read manifest {path}: {e}") from None
    is_toml = path.suffix == ".toml" or text.lstrip().startswith("[[")
    entries = _toml_entries(path, text) if is_toml else _line_entries(path, text)
    if not entries:
        raise SpecError(f"manifest {path} has no entries")
    for entry in entries:
        try:
            spec = parse_spec(entry.spec)
            if entry.mirrors and spec.provider != "url":
                raise SpecError("mirrors are more URLs of one URL's file, and this is no URL")
            check_mirrors(list(entry.mirrors))
        except SpecError as e:
            raise SpecError(f"{entry.where}: {e}") from None
    return entries


def _line_entries(path: Path, text: str) -> list[Entry]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path.name} line {number}"
        try:
            words = shlex.split(line, comments=True)
        except ValueError as e:
            raise SpecError(f"{where}: {e}") from None
        if not words:
            continue
        spec, mirrors, rest = words[0], [], words[1:]
        while rest[:1] == ["|"]:
            if len(rest) < 2:
                raise SpecError(f"{where}: a '|' must be followed by a mirror URL")
            mirrors.append(rest[1])
            rest = rest[2:]
        if len(rest) > 1:
            raise SpecError(
                f"{where}: expected 'SPEC [DEST]' or 'URL | URL2 … [DEST]', got {len(words)} words"
            )
        dest = _relative_to(path, rest[0], where) if rest else None
        entries.append(Entry(where, spec, dest, mirrors=tuple(mirrors)))
    return entries


def _toml_entries(path: Path, text: str) -> list[Entry]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path.name} is not valid TOML: {e}") from None
    tables = data.pop("download", [])
    unknown = set(data) - (ENTRY_KEYS - {"spec", "mirrors"})
    if unknown:
        raise SpecError(f"{path.name}: unknown top-level keys {sorted(unknown)}")
    if not isinstance(tables, list):
        raise SpecError(f"{path.name}: 'download' must be a list of tables ([[download]])")
    entries = []
    for number, table in enumerate(tables, start=1):
        where = f"{path.name} entry {number}"
        fields = {**data, **table}
        unknown = set(fields) - ENTRY_KEYS
        if unknown:
            raise SpecError(f"{where}: unknown keys {sorted(unknown)}")
        if not isinstance(fields.get("spec"), str):
            raise SpecError(f'{where}: needs spec = "…"')
        priority, connections = fields.get("priority", 0), fields.get("connections")
        if not _whole(priority, -MAX_PRIORITY, MAX_PRIORITY) or (
            connections is not None and not _whole(connections, 1, MAX_CONNECTIONS)
        ):
            raise SpecError(
                f"{where}: priority must be a whole number from {-MAX_PRIORITY} to "
                f"{MAX_PRIORITY}, connections from 1 to {MAX_CONNECTIONS}"
            )
        dest = _relative_to(path, str(fields["dest"]), where) if "dest" in fields else None
        if dest is not None and "dest" not in table:
            dest = dest.rstrip("/") + "/"  # the top-level dest: the folder of every entry
        mirrors = fields.get("mirrors", [])
        if not isinstance(mirrors, list) or not all(isinstance(m, str) for m in mirrors):
            raise SpecError(f"{where}: mirrors must be a list of URLs")
        entries.append(
            Entry(where, fields["spec"], dest, priority, connections, mirrors=tuple(mirrors))
        )
    return entries


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _relative_to(manifest: Path, dest: str, where: str) -> str:
    """A destination written in a manifest: an absolute (or ``~``) path as it is; a relative
    one below the manifest's folder only, since a manifest may come from someone else."""
    folder = dest.endswith("/")
    if dest.startswith(("/", "~")):
        resolved = str(Path(dest).expanduser().resolve())
    else:
        try:
            root = manifest.parent.resolve()
            resolved = str(safe_path(root, dest.rstrip("/"), what="destination"))
        except UnsafePathError as e:
            raise SpecError(f"{where}: {e} (give an absolute path to go elsewhere)") from None
    return resolved + "/" if folder else resolved


async def run_mirror(args: argparse.Namespace, out: Output) -> int:
    """Queue the manifest's entries (once) and run them to the end."""
    entries = read_manifest(args.manifest)
    async with DownloadManager(settings_for(args)) as manager:
        tasks = await manager.add_many([e.as_item() for e in entries])
        already = sum(t.state is TaskState.COMPLETED for t in tasks)
        distinct = {t.id: t for t in tasks}
        out.say(
            f"mirror {args.manifest.name}: {len(entries)} entries, {len(distinct)} tasks"
            f"{f', {already} already done' if already else ''}"
        )
        finals = await wait_with_progress(manager, list(distinct.values()), out)
        if finals is None:
            return exitcodes.INTERRUPTED
        completed = [t for t in finals if t.state is TaskState.COMPLETED]
        failed = [t for t in finals if t.state is not TaskState.COMPLETED]
        if out.json:
            out.data(
                {
                    "manifest": str(args.manifest),
                    "entries": len(entries),
                    "completed": len(completed),
                    "already_done": already,
                    "failed": len(failed),
                    "tasks": [task_json(t, files=await manager.files(t.id)) for t in finals],
                }
            )
    size = sum(t.total_bytes or 0 for t in completed)
    for t in failed:
        out.error(f"task {t.id} ({t.label}) {t.state.value}: {t.error or ''}".rstrip(": "))
    out.say(
        f"mirror {args.manifest.name}: {len(completed)} of {len(finals)} completed "
        f"({format_bytes(size)}; {already} were already done), {len(failed)} failed"
    )
    return exitcodes.OK if not failed else exitcodes.FAILED
