"""A test that needs a system program (nginx, chromium, tmux, ...) skips where it is not
installed, with one line naming the Debian package, so that the README's test command passes
on a fresh machine; under ``MODELHAUL_REQUIRE_SYSTEM=1`` (CI) it fails instead."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import PYTHON, REPO, REQUIRE_SYSTEM, SYSTEM_PACKAGES, python_env, system_program

NEEDS_A_MISSING_PROGRAM = """
from conftest import system_program

def test_that_needs_it():
    system_program("modelhaul-absent-program", "modelhaul-absent-package")
"""


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_needs.py"
    test.write_text(NEEDS_A_MISSING_PROGRAM)
    environment = python_env(**env)
    environment["PYTHONPATH"] += f":{REPO / 'tests'}"
    if not env:
        environment.pop(REQUIRE_SYSTEM, None)
    return subprocess.run(
        [PYTHON, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_program_skips_its_test_with_one_line_naming_the_debian_package(
    tmp_path: Path,
) -> None:
    got = _pytest(tmp_path)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "1 skipped" in got.stdout
    reason = (
        "needs modelhaul-absent-program (Debian package modelhaul-absent-package): not installed"
    )
    [line] = [line for line in got.stdout.splitlines() if line.startswith("SKIPPED")]
    assert line.endswith(reason), line


def test_under_modelhaul_require_system_a_missing_program_fails_its_test(tmp_path: Path) -> None:
    got = _pytest(tmp_path, **{REQUIRE_SYSTEM: "1"})
    assert got.returncode == 1, got.stdout + got.stderr
    assert "1 failed" in got.stdout
    assert f"{REQUIRE_SYSTEM}=1 requires it" in got.stdout
    assert "Traceback" not in got.stdout


def test_ci_installs_every_package_the_tests_name() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    [line] = [line for line in ci.splitlines() if line.startswith("DEBIAN_PACKAGES=(")]
    assert set(SYSTEM_PACKAGES.values()) <= set(line.removeprefix("DEBIAN_PACKAGES=(")[:-1].split())
    assert f"export {REQUIRE_SYSTEM}=1" in ci


def test_a_program_that_is_installed_is_found_by_its_path() -> None:
    assert Path(system_program("sh", "dash")).name == "sh"
