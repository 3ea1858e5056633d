"""Start-up: what ``modelhaul`` loads before it does anything. ``--help``, ``--version`` and
a usage error load neither the ledger's SQLAlchemy nor aiohttp (how long start-up takes is
``benchmarks/startup_bench.py``'s business, not a test's)."""

from __future__ import annotations

import importlib
import subprocess

import pytest
from conftest import PYTHON, python_env

import downloader
import storage

HEAVY = ("sqlalchemy", "alembic", "aiohttp", "huggingface_hub", "rich")


def imported_by(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``python -X importtime -m downloader ARGV``: its result, and every module it loaded."""
    got = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "downloader", *argv],
        capture_output=True,
        text=True,
        env=python_env(),
        timeout=60,
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in got.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return got, modules


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["get", "--help"], 0),
        (["--version"], 0),
        (["get"], 2),  # a usage error: no spec
        (["show", "not-an-id"], 2),
        (["no-such-command"], 2),
    ],
)
def test_help_version_and_usage_errors_load_neither_sqlalchemy_nor_aiohttp(
    argv: list[str], code: int
) -> None:
    got, modules = imported_by(*argv)
    assert got.returncode == code, got.stderr[-2000:]
    assert "downloader.cli.main" in modules  # the probe sees our imports at all
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert loaded == [], f"modelhaul {' '.join(argv)} loaded {loaded}"


def test_version_prints_the_installed_version_on_stdout() -> None:
    got, _ = imported_by("--version")
    assert got.stdout.startswith("modelhaul ") and got.stdout.split()[1][0].isdigit()


@pytest.mark.parametrize("package", [downloader, storage])
def test_every_public_name_is_its_modules_own_on_first_use(package) -> None:
    assert sorted(package._HOMES) == sorted(package.__all__)
    for name in package.__all__:
        home = importlib.import_module(package._HOMES[name])
        assert getattr(package, name) is getattr(home, name), name
    assert set(package.__all__) <= set(dir(package))


def test_from_downloader_import_star_gives_the_whole_surface() -> None:
    code = (
        "from downloader import *\n"
        "import downloader\n"
        "missing = [n for n in downloader.__all__ if n not in globals()]\n"
        "print(missing)\n"
    )
    got = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=python_env())
    assert got.returncode == 0 and got.stdout.strip() == "[]", got.stderr


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        downloader.Nope  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        storage.Nope  # noqa: B018


# What belongs to other commands: the live display, get's checks, verify, the server.
OTHERS = (
    "rich.progress",
    "downloader.cli.follow",
    "downloader.cli.display",
    "downloader.cli.getcmd",
    "downloader.preflight",
    "downloader.verify",
    "downloader.server",
)


@pytest.mark.parametrize(
    "argv",
    [
        ["ls"],
        ["ls", "--json"],
        ["show", "1"],
        ["pause", "1"],
        ["resume", "1", "--detach"],
        ["cancel", "1"],
    ],
)
def test_ls_show_and_the_control_commands_load_nothing_of_other_commands(
    argv: list[str], tmp_path
) -> None:
    got, modules = imported_by(*argv, "--home", str(tmp_path))
    assert got.returncode in (0, 2), got.stderr[-2000:]  # 2: no task 1 in an empty ledger
    loaded = sorted(m for m in modules if m.startswith(OTHERS))
    assert loaded == [], f"modelhaul {' '.join(argv)} loaded {loaded}"
