"""Helpers for tests that drive the CLI in-process or as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from drengine.cli import main, run_cli
from drengine.journal import Entry, read_entries

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, input: str | None = None) -> tuple[int, str]:
    """Run the CLI in-process through the error boundary; return (exit code, stdout+stderr)."""
    runner = CliRunner()
    with runner.isolation(input=input) as streams:
        code = run_cli(list(args))
    out = streams[0].getvalue().decode() + (streams[1].getvalue().decode() if streams[1] is not None else "")
    return code, out


def cli_subprocess(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drengine.cli", *args], capture_output=True, text=True, check=False,
                          env=env, timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


def events(run_dir: Path) -> list[Entry]:
    return list(read_entries(run_dir / "journal.jsonl"))


def of_type(run_dir: Path, kind: str) -> list[Entry]:
    return [e for e in events(run_dir) if e.type.value == kind]


__all__ = ["cli", "cli_subprocess", "events", "of_type", "main"]


def json_rows(response: object) -> list[dict[str, str]]:
    """The rows of a `_cat` API answer asked with format=json (elasticsearch-py types them loosely)."""
    body = getattr(response, "body", response)
    assert isinstance(body, list) and all(isinstance(row, dict) for row in body), body
    return body
