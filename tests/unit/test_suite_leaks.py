"""The suite's own leak check (tests/leaks.py, run by tests/conftest.py at the session's end):
it finds what a fixture left in the run directory, lab directories with live processes among
them, and removes them; pytest's own base directory is pytest's business."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from drengine.lab.procs import LabDir, is_ours
from tests.helpers import ROOT
from tests.leaks import leftovers, remove

pytestmark = pytest.mark.unit


def test_the_run_directory_holds_this_process_temporary_directories() -> None:
    made = Path(tempfile.mkdtemp(prefix="probe-"))
    try:
        assert made.parent.name.startswith("drt-"), made  # conftest pointed tempfile at the run directory
        assert made.parent.stat().st_mode & 0o755 == 0o755  # the lab servers (mysql) can reach it
    finally:
        made.rmdir()


def test_a_left_lab_directory_is_found_stopped_and_removed(tmp_path: Path) -> None:
    run_root = tmp_path / "run"
    (run_root / "pytest-of-root" / "pytest-0").mkdir(parents=True)
    lab = LabDir(run_root / "drengine-mariadb-lab-x")
    (lab.root / "mariadb").mkdir(parents=True)
    (lab.root / "mariadb" / "ibdata1").write_bytes(b"\0" * 4096)
    sleeper = lab.spawn("mariadb", "db1", ["sleep", "60"], lab.root / "db1.log")
    try:
        found = leftovers(run_root)
        assert [leak.path.name for leak in found] == ["drengine-mariadb-lab-x"]
        assert found[0].size >= 4096
        assert found[0].running == (f"mariadb/db1 pid {sleeper.pid}",)
        assert "still running: mariadb/db1" in found[0].describe()
        remove(found[0].path)
        assert not is_ours(sleeper) and not lab.root.exists()
        assert leftovers(run_root) == []  # pytest's base directory is not a leak
    finally:
        subprocess.run(["kill", str(sleeper.pid)], check=False)


def test_a_leaking_fixture_fails_the_session(tmp_path: Path) -> None:
    """A whole pytest session whose fixture forgets its directory: exit 1, the leak named, and
    nothing of it left on disk."""
    test_file = tmp_path / "test_leaky.py"
    test_file.write_text("import tempfile\n\ndef test_leaks():\n    print(tempfile.mkdtemp(prefix='leaky-'))\n")
    # The suite's two hooks, as the only conftest of a session outside tests/.
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_configure, pytest_sessionfinish  # noqa: F401\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           "-c", "/dev/null", str(test_file)], capture_output=True, text=True, timeout=120, check=False,
                          env=env, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "LEAK:" in out and "leaky-" in out, out
    leaked = next(line for line in out.splitlines() if "/leaky-" in line and not line.startswith("LEAK"))
    assert not Path(leaked.strip().split()[-1]).exists()
    assert not Path(leaked.strip().split()[-1]).parent.exists(), json.dumps(out)


def test_a_missing_service_fails_where_the_suite_installs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """`make test` sets DRENGINE_TEST_REQUIRE_SERVICES (CI sets CI=true): a Ceph that setup should
    have installed and did not is a failure there, not a silent skip; elsewhere it skips."""
    from tests.helpers import missing_service

    monkeypatch.delenv("DRENGINE_TEST_REQUIRE_SERVICES", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="the Ceph daemons: not installed"):
        missing_service("the Ceph daemons", "apt-get install ceph-mon")
    for name, value in (("DRENGINE_TEST_REQUIRE_SERVICES", "1"), ("CI", "true")):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with pytest.raises(pytest.fail.Exception, match="a missing service fails the run"):
                missing_service("the Ceph daemons", "apt-get install ceph-mon")
    makefile = (ROOT / "Makefile").read_text()
    assert makefile.count("DRENGINE_TEST_REQUIRE_SERVICES=1 .venv/bin/python -m pytest") == 2  # make test, make test-lab
