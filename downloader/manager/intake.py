"""Taking in requests: a spec (with its destination and options) becomes a queued task, or
finds the task that already stands for the same download and carries it on."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Container, Iterable, Mapping
from pathlib import Path
from typing import Any

from downloader.errors import SpecError
from downloader.manager.leases import Leases
from downloader.manager.tunables import RUN_OPTIONS, checked
from downloader.paths import check_writable
from downloader.settings import Settings
from downloader.sources import source_for
from downloader.specs import Spec, parse_spec
from storage import RESUMABLE, STANDING, Ledger, NewTask, TaskRecord, TaskState

Item = str | Spec | Mapping[str, Any]


class Intake:
    """Turns requests into tasks: new ones queued in one transaction, repeated ones reused."""

    def __init__(
        self, ledger: Ledger, settings: Settings, leases: Leases, running: Container[int]
    ) -> None:
        self._ledger = ledger
        self._settings = settings
        self._leases = leases
        self._running = running  # the ids of the tasks this manager runs now (a live view)

    async def add_many(
        self,
        items: Iterable[Item],
        *,
        dest: str | os.PathLike[str] | None,
        priority: int,
        connections: int | None,
        paused: bool,
        options: Mapping[str, Any],
    ) -> list[TaskRecord]:
        """The tasks for ``items``, in order: queued now, or found standing already."""
        new = [
            await self._new_task(item, dest, priority, connections, paused, dict(options))
            for item in items
        ]
        found: dict[int, TaskRecord] = {}
        fresh: list[tuple[int, NewTask]] = []
        for i, task in enumerate(new):
            existing = await self._ledger.tasks.find(task.spec_key, STANDING)
            if existing is None:
                fresh.append((i, task))
            else:
                found[i] = await self._reuse(await self._reclaim(existing), task, paused)
        ids = await self._ledger.tasks.enqueue([t for _, t in fresh], actor=self._leases.owner)
        for (i, _), task_id in zip(fresh, ids, strict=True):
            found[i] = await self._ledger.tasks.get(task_id)
        return [found[i] for i in range(len(new))]

    async def _new_task(
        self,
        item: Item,
        dest: str | os.PathLike[str] | None,
        priority: int,
        connections: int | None,
        paused: bool,
        options: dict[str, Any],
    ) -> NewTask:
        if isinstance(item, Mapping):
            fields = dict(item)
            if "spec" not in fields:
                raise SpecError(f"manifest entry {item!r} has no 'spec'")
            spec_item = fields.pop("spec")
            dest = fields.pop("dest", dest)
            priority = int(fields.pop("priority", priority))
            connections = fields.pop("connections", connections)
            options = {**options, **fields}
            item = spec_item
        spec = item if isinstance(item, Spec) else parse_spec(str(item))
        source = source_for(spec.provider)
        where = None if dest is None else os.fspath(dest)
        path = source.destination(spec, where, self._settings)
        await asyncio.to_thread(check_writable, path, folder=source.folder_destination)
        opts = {**spec.options, **options}
        if connections is not None:
            opts["connections"] = connections
        opts = checked(opts)
        if opts.get("mirrors") and spec.provider != "url":
            raise SpecError(f"mirrors are more URLs of one URL's file, and {spec.label} is not one")
        if opts.get("mirrors") == []:
            del opts["mirrors"]
        return NewTask(
            provider=spec.provider,
            source=spec.source,
            destination=str(path),
            revision=spec.revision,
            patterns=spec.patterns,
            options=opts,
            priority=priority,
            label=spec.label,
            state=TaskState.PAUSED if paused else TaskState.PENDING,
        )

    async def _reclaim(self, task: TaskRecord) -> TaskRecord:
        """A task asked for again while it is downloading somewhere: taken over at once if
        its process is gone (after a ``kill -9``) or is this process (an earlier
        ``download_model()`` whose caller left: the newer request carries it on)."""
        if task.state is not TaskState.DOWNLOADING or task.lease is None:
            return task
        if self._leases.orphaned(task, self._running):
            await self._leases.requeue(task, "its process is gone")
        elif task.lease.same_process(self._leases.lease):
            await self._leases.take_over(task)
        return await self._ledger.tasks.get(task.id)

    async def _reuse(self, task: TaskRecord, asked: NewTask, paused: bool) -> TaskRecord:
        """The same download asked for again: resume it rather than start over."""
        if task.state is TaskState.COMPLETED:
            files = await self._ledger.files.of_task(task.id)
            present = bool(files) and await asyncio.to_thread(
                lambda: all(Path(f.local_path).is_file() for f in files)
            )
            if present:
                return task
            # Its files are gone (or another program holds them): run it again; the engine
            # skips whatever is still in place.
            [task_id] = await self._ledger.tasks.enqueue([asked], actor=self._leases.owner)
            return await self._ledger.tasks.get(task_id)
        # How to run it may change with the new request (more connections, leave to
        # overwrite); what it fetches and where cannot (that is the task's identity).
        wanted = {k: asked.options[k] for k in RUN_OPTIONS if k in asked.options}
        if any(task.options.get(k) != v for k, v in wanted.items()):
            await self._ledger.tasks.merge_options(task.id, wanted)
            task = await self._ledger.tasks.get(task.id)
        if task.state in RESUMABLE and not paused:
            await self._leases.await_last_checkpoint(task)
            return await self._ledger.tasks.transition(
                task.id,
                TaskState.PENDING,
                reason="asked for again",
                expect=task.state,
                actor=self._leases.owner,
            )
        return task
