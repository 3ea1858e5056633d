"""The tests' PostgreSQL: ``downloader.testing.postgres`` (the benchmarks start theirs too)."""

from downloader.testing.postgres import (
    LEDGER_ENV,
    TEMPLATE,
    PostgresServer,
    free_port,
    start_server,
)

__all__ = ["LEDGER_ENV", "TEMPLATE", "PostgresServer", "free_port", "start_server"]
