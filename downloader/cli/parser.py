"""``modelhaul``'s command line: its commands and their options (the value types behind
them are ``cli.values``; a bad value is a usage error naming it, exit 2).

Every run imports this, ``--help`` and usage errors included, so it loads only the standard
library and the plain-Python bounds of ``downloader.settings``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import NoReturn

from downloader.cli import exitcodes, values
from downloader.settings import MAX_CONNECTIONS, MAX_PRIORITY, MAX_TASKS, MAX_TRIES
from storage import TaskState


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(exitcodes.USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def build_parser() -> Parser:
    """The whole command line."""
    common = Parser(add_help=False)
    common.add_argument(
        "--home",
        type=Path,
        default=argparse.SUPPRESS,
        help="the folder of the ledger (default $MODELHAUL_HOME)",
    )
    common.add_argument(
        "--ledger",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="the ledger itself: a SQLite file or postgresql+asyncpg://user@host/db, shared "
        "by a fleet of workers (default $MODELHAUL_LEDGER, else HOME/ledger.db)",
    )
    common.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="print data as JSON"
    )
    common.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print nothing but results and errors",
    )
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="tracebacks and debug logs"
    )
    common.add_argument(
        "--proxy",
        type=values.proxy,
        default=argparse.SUPPRESS,
        metavar="URL",
        help="an HTTP proxy for every request (default: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY; "
        "NO_PROXY bypasses either)",
    )
    common.add_argument(
        "--ca-certificate",
        type=values.existing_file,
        default=argparse.SUPPRESS,
        metavar="FILE",
        help="trust the CAs in this PEM bundle too (default: REQUESTS_CA_BUNDLE, SSL_CERT_FILE)",
    )
    common.add_argument(
        "--insecure",
        action="store_true",
        default=argparse.SUPPRESS,
        help="check no certificate at all (anyone on the way can change the bytes)",
    )

    parser = Parser(
        prog="modelhaul",
        description="Download model files over many connections; resume after anything.",
        epilog="Exit codes: 0 done, 1 failed, 2 usage, 130 interrupted (paused). " + values.SIZES,
        parents=[common],
    )
    parser.add_argument("--version", action=values.VersionAction, help="show the version and exit")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )

    def command(name: str, help: str) -> Parser:
        return sub.add_parser(name, help=help, description=help, parents=[common])

    get = command(
        "get",
        "download: a URL, hf://owner/repo[@rev][/file-or-glob], mlx://owner/repo, "
        "ollama://model[:tag], or a model alias",
    )
    get.add_argument("specs", nargs="+", metavar="SPEC")
    get.add_argument("--dest", metavar="DIR", help="the folder the files go to")
    get.add_argument("-o", "--output", metavar="FILE", help="the file a single URL is saved as")
    get.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="Hugging Face: fetch the repo files matching GLOB (repeatable)",
    )
    get.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="Hugging Face: leave out the repo files matching GLOB (repeatable)",
    )
    get.add_argument("--revision", help="Hugging Face: a branch, tag or commit (default main)")
    get.add_argument(
        "--connections",
        type=values.whole(1, MAX_CONNECTIONS),
        help=f"connections per file, 1-{MAX_CONNECTIONS} (default 16)",
    )
    get.add_argument(
        "--limit-rate",
        dest="task_rate",
        type=values.rate,
        metavar="RATE",
        help="e.g. 10M: bytes/s for this download (at least 1K), kept with it",
    )
    get.add_argument(
        "-H",
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="an HTTP header for every request (credentials: only to the file's own host, "
        "never stored)",
    )
    get.add_argument(
        "--checksum",
        metavar="sha256=HEX",
        help="the file's SHA-256: the download completes only if it matches",
    )
    get.add_argument(
        "--max-tries",
        type=values.whole(1, MAX_TRIES),
        metavar="N",
        help=f"tries in a row without progress before giving up, 1-{MAX_TRIES} (default 9)",
    )
    get.add_argument(
        "--timeout",
        type=values.seconds,
        metavar="SECONDS",
        help="give up on a connection that sends nothing for this long (default 30)",
    )
    get.add_argument(
        "--connect-timeout",
        type=values.seconds,
        metavar="SECONDS",
        help="give up on connecting after this long (default 30)",
    )
    get.add_argument(
        "--dry-run",
        action="store_true",
        help="show what would be fetched, how much and where; fetch nothing",
    )
    get.add_argument(
        "--priority",
        type=values.whole(-MAX_PRIORITY, MAX_PRIORITY),
        default=0,
        help=f"higher runs first, {-MAX_PRIORITY} to {MAX_PRIORITY} (default 0)",
    )
    get.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="another URL of the same file (repeatable, with one URL only): chunks are "
        "spread over all of them by speed",
    )
    get.add_argument(
        "--peer",
        action="append",
        type=values.peer,
        metavar="URL",
        help="another modelhaul server (http://[TOKEN@]host:port) asked first for any file "
        "whose SHA-256 is known (repeatable; default $MODELHAUL_PEERS); the digest decides",
    )
    get.add_argument("--token", help="an access token (used in memory only)")
    get.add_argument("--detach", action="store_true", help="only queue it for a worker or server")
    get.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a different file already at the destination (once the new bytes "
        "pass every check)",
    )
    get.add_argument(
        "--no-check", action="store_true", help="skip the disk-space check before starting"
    )

    ls = command("ls", "list tasks")
    ls.add_argument("--state", choices=[s.value for s in TaskState])

    show = command("show", "one task: files, chunks, history")
    show.add_argument("id", type=values.task_id)

    for name, help in (
        ("pause", "pause tasks (their progress is kept)"),
        ("resume", "resume paused tasks (in the foreground unless --detach)"),
        ("retry", "retry failed tasks (in the foreground unless --detach)"),
        ("cancel", "cancel tasks for good"),
        ("rm", "forget tasks (their files stay)"),
    ):
        p = command(name, help)
        p.add_argument("ids", nargs="+", type=values.task_id, metavar="ID")
        if name == "cancel":
            p.add_argument("--purge", action="store_true", help="also delete partial files")
        if name in ("resume", "retry"):
            p.add_argument("--detach", action="store_true", help="only queue it")
            p.add_argument(
                "--limit-rate",
                dest="task_rate",
                type=values.rate,
                metavar="RATE",
                help="e.g. 10M: bytes/s for these downloads from now on (at least 1K)",
            )

    command("watch", "a live table of every task")

    worker = command("worker", "run queued tasks headless (for systemd or a container)")
    worker.add_argument("--once", action="store_true", help="exit when the queue is empty")
    worker.add_argument(
        "--limit-rate",
        dest="process_rate",
        type=values.rate,
        metavar="RATE",
        help="e.g. 10M: bytes/s for everything this worker runs (at least 1K)",
    )
    worker.add_argument(
        "--max-tasks",
        type=values.whole(1, MAX_TASKS),
        help=f"tasks at once, 1-{MAX_TASKS} (default 4)",
    )

    serve = command("serve", "the REST + SSE server and its web page")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument(
        "--limit-rate",
        dest="process_rate",
        type=values.rate,
        metavar="RATE",
        help="e.g. 10M: bytes/s for everything this server runs (at least 1K)",
    )
    serve.add_argument(
        "--port", type=values.whole(1, values.MAX_PORT), default=8000, help="1-65535"
    )
    serve.add_argument(
        "--token",
        default=os.environ.get("MODELHAUL_TOKEN"),
        help="require this bearer token (default $MODELHAUL_TOKEN)",
    )
    serve.add_argument(
        "--peer-token",
        default=os.environ.get("MODELHAUL_PEER_TOKEN"),
        help="a second token that opens only GET/HEAD /api/v1/blobs/… (for peers, who then "
        "cannot start or stop anything; default $MODELHAUL_PEER_TOKEN)",
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        type=values.web_origin,
        metavar="ORIGIN",
        help="let pages from this other site call the API, e.g. http://localhost:3000 "
        "(repeatable; default: comma-separated $MODELHAUL_CORS_ORIGINS, else none); "
        "its requests still need the token",
    )

    limit = command(
        "limit",
        "the bandwidth limit every download follows, changed live (or by the clock); "
        "alone: show it",
    )
    setting = limit.add_mutually_exclusive_group()
    setting.add_argument(
        "rate",
        nargs="?",
        type=values.live_rate,
        metavar="RATE",
        help="e.g. 8M (at least 1K), or off",
    )
    setting.add_argument(
        "--schedule",
        type=values.schedule,
        metavar="'HH:MM-HH:MM=RATE,...'",
        help="the global limit by the local clock, e.g. '08:00-18:00=2M,18:00-08:00=off' "
        "(rules cover the day once; a rule may wrap midnight); off: no schedule",
    )
    limit.add_argument(
        "--task", type=values.task_id, metavar="ID", help="set that task's own limit"
    )

    command(
        "workers",
        "the processes running downloads on this ledger: host, pid, tasks, rate, last "
        "heartbeat (those silent past stale_after: gone)",
    )

    peers = command(
        "peers",
        "which peers (other modelhaul servers) answer, and which of the files this machine "
        "holds or wants they have, by SHA-256",
    )
    peers.add_argument(
        "--peer",
        action="append",
        type=values.peer,
        metavar="URL",
        help="a peer, http://[TOKEN@]host:port (repeatable; default: comma-separated "
        "$MODELHAUL_PEERS)",
    )
    peers.add_argument(
        "--digest",
        action="append",
        type=values.sha256_digest,
        metavar="HEX",
        help="ask only for this SHA-256 (repeatable; default: every digest the ledger "
        "expects of an unfinished file, and every one in the content index)",
    )

    verify = command("verify", "re-check chunk and file digests on disk")
    verify.add_argument("ids", nargs="*", type=values.task_id, metavar="ID")
    verify.add_argument(
        "--repair",
        action="store_true",
        help="fetch the bad blocks of finished files again, then check them again",
    )

    mirror = command("mirror", "download every entry of a manifest (crash-safe: run it again)")
    mirror.add_argument("manifest", type=Path)
    mirror.add_argument(
        "--max-tasks",
        type=values.whole(1, MAX_TASKS),
        help=f"tasks at once, 1-{MAX_TASKS} (default 4)",
    )

    models = command("models", "the model registry: aliases that work as specs")
    models.add_argument("alias", nargs="?", help="show one model")
    models.add_argument("--provider", choices=["huggingface", "ollama", "mlx"])
    models.add_argument("--capability")
    models.add_argument("--recommended", action="store_true")

    cache = command("cache", "what is cached (HF cache, Ollama store, downloads); evict, delete")
    cache_sub = cache.add_subparsers(
        dest="cache_command", required=True, metavar="ACTION", parser_class=Parser
    )
    cache_sub.add_parser("ls", help="cached models, least recently used first", parents=[common])
    cache_sub.add_parser("du", help="total size on disk", parents=[common])
    cache_sub.add_parser(
        "scan",
        help="index the HF cache's and the Ollama store's files by SHA-256, for reuse",
        parents=[common],
    )
    removing = Parser(add_help=False)  # what rm, evict and clear share: nothing without asking
    removing.add_argument("-y", "--yes", action="store_true", help="delete without asking")
    removing.add_argument("--dry-run", action="store_true", help="only show what would be deleted")
    removing.add_argument(
        "--all",
        action="store_true",
        help="also models other tools downloaded (by default only modelhaul's downloads)",
    )
    rm = cache_sub.add_parser(
        "rm",
        help="delete cached models: names as 'cache ls' shows them, or specs",
        parents=[common, removing],
    )
    rm.add_argument("specs", nargs="+", metavar="NAME")
    evict = cache_sub.add_parser(
        "evict", help="delete least recently used models to fit a size", parents=[common, removing]
    )
    evict.add_argument(
        "--max-size", type=values.size, required=True, metavar="SIZE", help="e.g. 50G"
    )
    cache_sub.add_parser(
        "clear", help="delete every model no task holds", parents=[common, removing]
    )

    demo = command("demo", "an offline demonstration: local servers, faults, a crash, resume")
    demo.add_argument(
        "--size",
        type=values.demo_size,
        default=96 << 20,
        help="the GGUF's size, 1M-16G (default 96M)",
    )
    demo.add_argument("--keep", action="store_true", help="keep the demo's folder")
    for name in ("get", "resume", "retry", "worker", "serve", "demo", "limit"):
        sub.choices[name].epilog = values.SIZES
    evict.epilog = values.SIZES
    return parser
