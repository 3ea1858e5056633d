"""Between sources and the ledger: the spec a task asks for (as sources read it), and the
ledger row of a remote file (as the engine reads it)."""

from __future__ import annotations

from downloader.sources import RemoteFile
from downloader.specs import Spec
from storage import NewFile, TaskRecord


def spec_of(task: TaskRecord) -> Spec:
    """What ``task`` asks for, as sources read it (its options carry the pins of an earlier
    run: a commit, a manifest)."""
    return Spec(task.provider, task.source, task.revision, task.patterns, task.options)


def new_file(remote: RemoteFile, block_size: int) -> NewFile:
    """The ledger's row for a remote file."""
    return NewFile(
        url=remote.url,
        relpath=remote.name,
        local_path=str(remote.target),
        block_size=block_size,
        size=remote.size,
        expected_sha256=remote.sha256,
        meta={
            **remote.meta,
            "content_addressed": remote.content_addressed,
            "partial_suffix": remote.partial_suffix,
            # More URLs of the same bytes; kept with the file so a resume uses them too.
            **({"mirrors": list(remote.urls[1:])} if len(remote.urls) > 1 else {}),
        },
    )
