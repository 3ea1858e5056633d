"""Memory stays bounded: a 2 GiB download holds a few MiB per connection, not the file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import PYTHON, python_env
from enginekit import file_sha256

pytestmark = pytest.mark.slow
HELPER = ["-m", "downloader.testing.fetch"]


def test_a_2_gib_download_never_holds_more_than_a_few_mib_per_connection(
    tmp_path: Path, nginx_server, huge_file: Path
) -> None:
    connections = 16
    dest = tmp_path / "huge.bin"
    digest = file_sha256(huge_file)  # published: the SHA-256 reader's memory counts too
    result = subprocess.run(
        [
            PYTHON,
            *HELPER,
            str(tmp_path / "ledger.db"),
            nginx_server.url("huge.bin"),
            str(dest),
            str(connections),
            digest,
            "--fixed",  # the count the bound is per: none added while they raise the rate
        ],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    fields = dict(f.split("=") for f in last.split()[2:])
    grown_mib = (int(fields["peak_kib"]) - int(fields["baseline_kib"])) / 1024
    print(f"peak RSS grew {grown_mib:.1f} MiB over the baseline for {connections} connections")
    assert grown_mib < connections * 4
    assert last.split()[1] == digest == file_sha256(dest)
