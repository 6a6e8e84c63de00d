"""`drengine lab up` while something else holds one of the lab's ports: refused before anything
starts (exit 1), naming the port, the process holding it (pid and command, read from /proc) and
what frees it: `drengine lab down --dir DIR` when it is another lab's, `kill PID` otherwise.
It once ended "internal error: OperationalError (2003, ...)" for MariaDB.

The MariaDB and MongoDB labs' fixed ports are moved to free ones for these tests, so that a lab
another test (or an engineer) runs is never disturbed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from drengine.datastores.mariadb import lab as lab_mariadb
from drengine.datastores.mongodb import lab as lab_mongodb
from drengine.lab.procs import LabDir, port_free
from tests.helpers import cli, lab_root

pytestmark = pytest.mark.lab


def free_base(count: int, start: int) -> int:
    """`count` consecutive ports free on 127.0.0.1 from `start` on (below the ephemeral range)."""
    for base in range(start, start + 2000, 10):
        if all(port_free(p) for p in range(base, base + count)):
            return base
    pytest.fail(f"no {count} consecutive free ports from {start}")


@pytest.fixture
def listener() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """A plain process listening on a free port (not a lab's)."""
    port = free_base(1, 26500)
    code = ("import socket, sys, time\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
            "print('listening', flush=True); time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "listening"
        yield port, proc
    finally:
        proc.kill()
        proc.wait(5)


def test_mariadb_lab_names_the_process_on_its_port(listener: tuple[int, subprocess.Popen[str]], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    port, holder = listener
    base = free_base(3, 25061)
    monkeypatch.setattr(lab_mariadb, "PORT_BASE", base)
    monkeypatch.setattr(lab_mariadb, "WRITE_PORT", port)  # the proxy's write frontend is taken
    monkeypatch.setattr(lab_mariadb, "READ_PORT", free_base(1, port + 1))
    with lab_root("drengine-ports-") as root:  # reachable by mysql: the lab checks that first
        lab = root / "lab"
        code, out = cli("lab", "up", "mariadb", "--dir", str(lab), "--inventory-out", str(tmp_path / "inv.yaml"))
        assert code == 1, out
        assert "internal error" not in out and "OperationalError" not in out, out
        assert f"HAProxy write frontend: 127.0.0.1:{port} is held by pid {holder.pid}" in out, out
        assert "import socket" in out  # its command line, from /proc
        assert f"not a drengine lab process; stop it (`kill {holder.pid}`)" in out, out
        assert not LabDir(lab).processes() and not (tmp_path / "inv.yaml").exists()  # nothing was started


def test_another_lab_on_the_ports_is_named_with_its_lab_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = free_base(3, 27217)
    monkeypatch.setattr(lab_mongodb, "PORT_BASE", base)
    first, second = tmp_path / "first", tmp_path / "second"
    code, out = cli("lab", "up", "mongodb", "--scenario", "healthy-3", "--dir", str(first),
                    "--inventory-out", str(tmp_path / "first.yaml"))
    assert code == 0, out
    try:
        served = LabDir(first).find("mongodb", "mongodb-sim")
        assert served is not None
        code, out = cli("lab", "up", "mongodb", "--scenario", "healthy-3", "--dir", str(second),
                        "--inventory-out", str(tmp_path / "second.yaml"))
        assert code == 1, out
        assert f"127.0.0.1:{base} is held by pid {served.pid}" in out, out
        assert f"a process of the lab in {first}; `drengine lab down --dir {first}` frees it" in out, out
        assert "internal error" not in out
        assert not LabDir(second).processes()
    finally:
        code, out = cli("lab", "down", "--dir", str(first))
    assert code == 0, out
    # Freed as the message says: the second lab starts now.
    code, out = cli("lab", "up", "mongodb", "--scenario", "healthy-3", "--dir", str(second),
                    "--inventory-out", str(tmp_path / "second.yaml"))
    try:
        assert code == 0, out
    finally:
        cli("lab", "down", "--dir", str(second))
    assert port_free(base)
