"""Helpers for tests that drive the CLI in-process or as a subprocess."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from click.testing import CliRunner

from drengine.cli import main, run_cli
from drengine.journal import Entry, read_entries
from drengine.lab.procs import LabDir

ROOT = Path(__file__).resolve().parent.parent

# A simulated MariaDB cluster named `sim` whose primary died while a replica lagged.
SIM_MARIADB = """\
clusters:
  sim:
    kind: mariadb
    simulated: {scenario: primary-dead-replica-lagging}
    timeouts: {connect: 1, read: 2, catch_up: 5}
    members:
      - {name: db1, address: 127.0.1.11, port: 3306}
      - {name: db2, address: 127.0.1.12, port: 3306}
      - {name: db3, address: 127.0.1.13, port: 3306}
"""


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


@contextlib.contextmanager
def lab_root(prefix: str) -> Iterator[Path]:
    """A lab directory the servers (run as mysql) can reach, removed when the block ends:
    not pytest's tmp_path, whose parents are mode 700."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def mariadb_lab(prefix: str) -> Iterator[tuple[LabDir, str]]:
    """Three real mariadbd with GTID replication (and their proxies) in a lab directory of their
    own, with the inventory written beside them; stopped and removed when the block ends."""
    from drengine.datastores.mariadb import lab as lab_mariadb

    with lab_root(prefix) as root:
        lab = LabDir(root)
        inventory = str(root / "inventory.yaml")
        try:
            lab_mariadb.up(lab, inventory_out=inventory)
            yield lab, inventory
        finally:
            lab_mariadb.down(lab)


# Set by `make test` and `make test-lab` (and on CI): the services scripts/setup.sh --services
# installs are expected here, so one that is missing fails the test instead of skipping it.
REQUIRE_SERVICES = "DRENGINE_TEST_REQUIRE_SERVICES"


def services_required() -> bool:
    return os.environ.get(REQUIRE_SERVICES, "") not in ("", "0") or os.environ.get("CI", "").lower() == "true"


def missing_service(what: str, install: str) -> NoReturn:
    """Skip on a developer's machine without the service; fail where the suite installed it."""
    message = f"{what}: not installed here ({install})"
    if services_required():
        pytest.fail(f"{message}; `make test` installs it (scripts/setup.sh --services): "
                    f"a missing service fails the run ({REQUIRE_SERVICES} or CI=true)")
    pytest.skip(message)


def require_ceph() -> None:
    """The Ceph daemons and the rados module, or skip/fail as missing_service says."""
    if shutil.which("ceph-mon") is None or shutil.which("ceph-osd") is None or shutil.which("ceph-mgr") is None:
        missing_service("the Ceph daemons", "apt-get install ceph-mon ceph-osd ceph-mgr")
    try:
        import rados  # noqa: F401
    except ImportError:
        missing_service("the rados Python module", "apt-get install python3-rados")
