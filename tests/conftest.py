"""Shared test set-up: each test directory is a tier (unit, sim, lab) with its own marker,
and every test gets its own lock directory so runs never see each other's locks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture
def repo_root() -> Path:
    return ROOT


def drengine_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRENGINE_TEST_")}
    env.update(extra)
    return env
