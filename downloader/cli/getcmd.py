"""``modelhaul get``: from the command line's words to queued (or running) downloads, with the
options users of ``hf download``, ``aria2c`` and ``curl`` reach for.

Each spec is parsed once; the checks (size, space) resolve it once and hand that answer to
the download. What is asked for stays with the task (its limit, tries, timeouts, headers
without credentials), so a worker that runs it later honours it; credentials never do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

from downloader.cli import exitcodes
from downloader.cli.follow import follow
from downloader.cli.options import settings_for
from downloader.cli.output import Output
from downloader.errors import SpecError
from downloader.headers import is_credential, parse_header
from downloader.manager import DownloadManager
from downloader.manager.tunables import check_mirrors
from downloader.peers import parse_peers
from downloader.preflight import SizeEstimate, Validation, validate
from downloader.progress import format_bytes
from downloader.settings import Settings
from downloader.sources import Resolution
from downloader.specs import Spec, parse_spec, repo_spec


async def get(args: argparse.Namespace, out: Output) -> int:
    """Download specs in the foreground (or only queue them with ``--detach``; or, with
    ``--dry-run``, only say what would be fetched)."""
    specs = [_with_selection(parse_spec(text), args) for text in args.specs]
    specs = _with_checksum(specs, args.checksum)
    specs = _with_mirrors(specs, args.mirror)
    dest = _destination(args, specs)
    headers = dict(parse_header(h) for h in args.header or ())
    options = _task_options(args)
    peers = parse_peers(args.peer) if args.peer else ()
    if peers:
        # The task keeps where they are; their tokens stay with this process.
        options["peers"] = [p.base for p in peers]
    settings = settings_for(args, peers=tuple(p.spelled for p in peers) or None)
    checks = _Checks(settings, dest, args.token, headers)
    if args.dry_run:
        return await _dry_run(specs, checks, out)
    # The ledger opens (a new one is built) while the checks ask the network: the first
    # request of a large file then waits for the slower of the two, not for both. The
    # manager runs nothing until the checks have passed.
    manager = DownloadManager(settings, autostart=False)
    async with _opened_meanwhile(manager) as opening:
        # --no-check: no resolutions; the download resolves each spec itself.
        checked = [] if args.no_check else specs
        resolutions = await _checked(checked, checks, out) if checked else [None] * len(specs)
        if resolutions is None:
            return exitcodes.FAILED
        # Shielded: a Ctrl-C here stops the command, not the ledger half-way through opening.
        await asyncio.shield(opening)
        manager.autostart = not args.detach
        tasks = [
            await manager.add(
                spec,
                dest=dest,
                priority=args.priority,
                connections=args.connections,
                token=args.token,
                headers=headers,
                resolution=resolution,
                **options,
            )
            for spec, resolution in zip(specs, resolutions, strict=True)
        ]
        if args.detach:
            _left_in_memory(args, headers, out)
            if out.json:
                ids = [{"id": t.id} for t in tasks]
                out.data(ids[0] if len(ids) == 1 else ids)
            else:
                for t in tasks:
                    out.say(f"queued task {t.id}: {t.label} (run 'modelhaul worker' to fetch it)")
            return exitcodes.OK
        return await follow(manager, tasks, out)


@dataclasses.dataclass(frozen=True)
class _Checks:
    """What the checks of every spec are made with."""

    settings: Settings
    dest: str | None
    token: str | None
    headers: dict[str, str]

    async def verdict(self, spec: Spec, out: Output) -> Validation:
        """The checks of ``spec``, their warnings said."""
        verdict = await validate(
            spec, settings=self.settings, dest=self.dest, token=self.token, headers=self.headers
        )
        for warning in verdict.warnings:
            out.error(f"warning: {warning}")
        return verdict


async def _dry_run(specs: Sequence[Spec], checks: _Checks, out: Output) -> int:
    """``--dry-run``: what each spec would fetch, or why it can't be; no ledger is opened."""
    for spec in specs:
        verdict = await checks.verdict(spec, out)
        if verdict.estimate is None:
            for problem in verdict.problems:
                out.error(problem)
            return exitcodes.FAILED
        _show_plan(verdict.estimate, out)
    return exitcodes.OK


async def _checked(
    specs: Sequence[Spec], checks: _Checks, out: Output
) -> list[Resolution | None] | None:
    """Each spec's checks (size, space): their resolution (a Hub's file list, a manifest)
    goes on to the download, which then does not ask again. None once a check fails (its
    problems said)."""
    resolutions: list[Resolution | None] = [None] * len(specs)
    for i, spec in enumerate(specs):
        verdict = await checks.verdict(spec, out)
        if verdict.estimate is not None and verdict.problems:
            for problem in verdict.problems:
                out.error(problem)
            return None
        resolutions[i] = verdict.estimate.resolution if verdict.estimate else None
    return resolutions


@contextlib.asynccontextmanager
async def _opened_meanwhile(
    manager: DownloadManager,
) -> AsyncIterator[asyncio.Task[DownloadManager]]:
    """Open ``manager`` in the background while the body runs; close it after. An error of
    the opening reaches whoever awaits it. A body that ends without it (a check failed, a
    Ctrl-C) cancels an opening still under way rather than wait for a ledger it won't use."""
    opening = asyncio.create_task(manager.__aenter__())
    try:
        yield opening
    finally:
        if not opening.done():
            opening.cancel()  # open_ledger closes what it opened when cancelled
        try:
            await asyncio.shield(opening)
        except (Exception, asyncio.CancelledError):  # said by the body's own await, or moot
            pass
        else:
            await manager.close()


def _with_selection(spec: Spec, args: argparse.Namespace) -> Spec:
    """``--include``, ``--exclude`` and ``--revision`` applied to a repo spec."""
    if not (args.include or args.exclude or args.revision):
        return spec
    if spec.provider not in ("huggingface", "mlx"):
        raise SpecError(
            f"--include, --exclude and --revision select files of a Hugging Face repo, and "
            f"{spec.label} is not one"
        )
    patterns = (*(spec.patterns or ()), *(args.include or ()))
    options = dict(spec.options)
    if args.exclude:
        options["exclude"] = list(args.exclude)
    # Checked like the same words in a spec (hf://owner/repo@rev/glob).
    checked = dataclasses.replace(spec, patterns=patterns or None, options=options)
    if args.revision:
        checked = dataclasses.replace(checked, revision=args.revision)
    repo_spec(
        checked.provider, checked.source, revision=checked.revision, patterns=checked.patterns
    )
    for pattern in args.exclude or ():
        repo_spec(checked.provider, checked.source, patterns=(pattern,))
    return checked


def _destination(args: argparse.Namespace, specs: Sequence[Spec]) -> str | None:
    """``--dest`` always names a folder; ``-o`` the one file a single URL is saved as."""
    if args.output is not None:
        if args.dest is not None:
            raise SpecError("-o/--output names the file and --dest the folder: give one")
        if len(specs) != 1 or specs[0].provider != "url":
            raise SpecError(
                "-o/--output names the one file a single URL is saved as; use --dest for a "
                "folder (repos and Ollama models are several files)"
            )
        if args.output.endswith("/"):
            raise SpecError(f"-o/--output {args.output!r} names a folder: use --dest")
        return args.output
    if args.dest is None:
        return None
    return args.dest if args.dest.endswith("/") else args.dest + "/"


def _with_checksum(specs: list[Spec], checksum: str | None) -> list[Spec]:
    """``--checksum sha256=HEX``: the digest one URL's file must have, part of what its
    spec resolves to (so the checks and the download agree on it)."""
    if checksum is None:
        return specs
    if len(specs) != 1 or specs[0].provider != "url":
        raise SpecError(
            "--checksum is the SHA-256 of one URL's file (repos and Ollama models publish "
            "their own digests)"
        )
    kind, _, digest = checksum.partition("=")
    digest = digest.strip().lower()
    if kind.strip().lower() != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise SpecError(f"--checksum {checksum!r:.80}: expected sha256=HEX (64 hex digits)")
    return [dataclasses.replace(specs[0], options={**specs[0].options, "sha256": digest})]


def _with_mirrors(specs: list[Spec], mirrors: list[str] | None) -> list[Spec]:
    """``--mirror URL`` (repeatable): more URLs of one URL's file, kept with its task."""
    if not mirrors:
        return specs
    if len(specs) != 1 or specs[0].provider != "url":
        raise SpecError("--mirror gives more URLs of one URL's file: give exactly one URL with it")
    checked = check_mirrors(mirrors)
    return [dataclasses.replace(specs[0], options={**specs[0].options, "mirrors": checked})]


def _task_options(args: argparse.Namespace) -> dict[str, Any]:
    """What is kept with each task so that whichever process runs it honours it."""
    options: dict[str, Any] = {}
    if args.overwrite:
        options["overwrite"] = True
    if args.task_rate is not None:
        options["rate_limit"] = args.task_rate
    if args.max_tries is not None:
        options["max_tries"] = args.max_tries
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.connect_timeout is not None:
        options["connect_timeout"] = args.connect_timeout
    return options


def _left_in_memory(args: argparse.Namespace, headers: dict[str, str], out: Output) -> None:
    """Credentials given to a detached download stay with this process, which ends now: say
    where the worker will find them instead of dropping them silently."""
    if args.token or any(is_credential(name) for name in headers):
        out.error(
            "note: credentials (--token, -H with a credential) are never stored with a task; "
            "the worker that runs it finds them in HF_TOKEN (or 'hf auth login') for the "
            "Hugging Face Hub and in ~/.netrc (or $NETRC) for other hosts"
        )


def _show_plan(estimate: SizeEstimate, out: Output) -> None:
    """What a download would fetch, how much, and where (``--dry-run``)."""
    total = estimate.total_bytes
    if out.json:
        out.data(
            {
                "spec": estimate.spec,
                "destination": str(estimate.destination),
                "total_bytes": total,
                "files": [{"path": p, "size": size} for p, size in estimate.files],
            }
        )
        return
    size = format_bytes(total) if total is not None else "unknown size"
    out.say(f"{estimate.spec}: {len(estimate.files)} file(s), {size}, to {estimate.destination}")
    for path, file_size in estimate.files:
        out.say(f"  {format_bytes(file_size) if file_size is not None else '?':>10}  {path}")
