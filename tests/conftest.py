"""Shared test set-up: each test directory is a tier (unit, sim, lab) with its own marker,
every test gets its own lock directory so runs never see each other's locks, and the run's
temporary directories live in one run directory that must be empty when the session ends
(tests/leaks.py)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.leaks import leftovers, remove, running_in, size_of, stop_labs  # noqa: E402

RUN_ROOT = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Every temporary directory this process makes (tempfile.mkdtemp, pytest's tmp_path) goes
    into one run directory, so that what is left at the end is known to be this run's. Mode 755:
    the lab servers run as mysql and must reach their folders. A short name: Unix socket paths
    inside it are limited to 107 bytes."""
    root = Path(tempfile.mkdtemp(prefix="drt-", dir=tempfile.gettempdir()))
    os.chmod(root, 0o755)
    config.stash[RUN_ROOT] = root
    tempfile.tempdir = str(root)
    # `drengine lab up` without --dir in a test must not use (or leave) the shared /tmp/drengine-lab.
    os.environ.setdefault("DRENGINE_LAB_DIR", str(root / "default-lab"))


@pytest.hookimpl(trylast=True)  # after pytest's own clean-up of its base directory
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the run when a fixture left a directory behind (then remove it anyway, stopping what
    runs there by PID); keep pytest's directories of failed tests, and say where they are."""
    root = session.config.stash.get(RUN_ROOT, None)
    if root is None:
        return
    tempfile.tempdir = None
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    leaks = leftovers(root)
    for leak in leaks:
        remove(leak.path)
    if leaks:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.section("temporary directories left behind", red=True)
            for leak in leaks:
                reporter.write_line(f"LEAK: {leak.describe()}")
            reporter.write_line("each fixture must remove what it made (see tests/leaks.py); removed now")
    running = running_in(root)
    if running:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter is not None:
            reporter.write_line(f"LEAK: lab processes still running under {root}: {', '.join(running)}; stopping them")
        stop_labs(root)
    if session.exitstatus != 0 and any(root.glob("pytest-of-*/pytest-*/*")):
        if reporter is not None:
            reporter.write_line(f"kept for the failed tests: {root} ({size_of(root) / 1e6:.0f} MB); remove it when done")
    else:
        shutil.rmtree(root, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.fspath)).relative_to(ROOT / "tests").parts[0]
        if tier in ("unit", "sim", "lab", "mutants") and item.get_closest_marker(tier) is None:
            item.add_marker(getattr(pytest.mark, tier))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The mutation suite's score, when it ran (tests/mutants)."""
    module = sys.modules.get("test_mutants")
    lines = getattr(module, "SCORE_LINES", None)
    if lines:
        terminalreporter.section("explorer mutation score")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _isolated_locks(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRENGINE_LOCK_DIR", str(tmp_path_factory.mktemp("locks")))
    # Each test's simulated clusters start from their scenarios (runs keep their state between runs).
    monkeypatch.setenv("DRENGINE_SIM_DIR", str(tmp_path_factory.mktemp("simulated")))


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def drengine_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRENGINE_TEST_")}
    env.update(extra)
    return env
