"""Lab HAProxy: a real HAProxy (Debian's haproxy) on loopback in front of a lab cluster, as
operators run it in front of MariaDB and Galera: a write frontend (`balance first`: one
server takes the writes; the others start `disabled`, i.e. in maintenance) and a read
frontend, both in TCP mode with MySQL health checks, and its runtime API on a unix socket
(`level admin`). It runs in the foreground under LabDir.spawn, recorded under the cluster's
lab kind, so `lab down` stops it by PID with the cluster.
"""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from drengine.clock import wait_until
from drengine.lab.procs import LabDir, LabError, LabProcess, is_ours

HAPROXY = "/usr/sbin/haproxy"
CHECK_USER = "haproxy_check"  # a password-less account without privileges, for `option mysql-check`
NAME = "haproxy"


@dataclass(frozen=True)
class LabProxy:
    kind: str  # the lab kind it belongs to (mariadb, galera)
    directory: Path
    members: tuple[tuple[str, int], ...]  # (member name, client port) on 127.0.0.1
    primary: str  # the member the write backend starts with
    write_port: int
    read_port: int

    @property
    def socket(self) -> Path:
        return self.directory / "admin.sock"

    @property
    def write_backend(self) -> str:
        return f"{self.kind}_write"

    @property
    def read_backend(self) -> str:
        return f"{self.kind}_read"

    def config(self) -> str:
        def servers(primary_only: bool) -> list[str]:
            return [f"    server {name} 127.0.0.1:{port} check inter 500ms fall 2 rise 1"
                    + (" disabled" if primary_only and name != self.primary else "") for name, port in self.members]

        return "\n".join([
            "global",
            f"    stats socket {self.socket} mode 600 level admin",
            "    maxconn 500",
            "defaults",
            "    mode tcp",
            "    timeout connect 1s",
            "    timeout client 1h",
            "    timeout server 1h",
            "    timeout check 500ms",
            f"frontend {self.kind}_write_in",
            f"    bind 127.0.0.1:{self.write_port}",
            f"    default_backend {self.write_backend}",
            f"frontend {self.kind}_read_in",
            f"    bind 127.0.0.1:{self.read_port}",
            f"    default_backend {self.read_backend}",
            f"backend {self.write_backend}",
            "    balance first",
            f"    option mysql-check user {CHECK_USER}",
            *servers(primary_only=True),
            f"backend {self.read_backend}",
            "    balance roundrobin",
            f"    option mysql-check user {CHECK_USER}",
            *servers(primary_only=False),
            "",
        ])

    def inventory(self, credentials: dict[str, object]) -> dict[str, object]:
        """The cluster's `proxies:` entry for this HAProxy."""
        servers = {name: name for name, _ in self.members}
        return {
            "name": f"{self.kind}-haproxy",
            "api": {"socket": str(self.socket)},
            "frontend": {"address": "127.0.0.1", "port": self.write_port},
            "credentials": credentials,
            "standby": "maint",
            "rejoined": "ready",
            "backends": [
                {"name": self.write_backend, "role": "write", "servers": servers},
                {"name": self.read_backend, "role": "read", "servers": servers},
            ],
        }


def start(lab: LabDir, proxy: LabProxy) -> LabProcess:
    """Write the configuration, check it, start HAProxy and wait until its runtime API answers."""
    proxy.directory.mkdir(parents=True, exist_ok=True)
    config = proxy.directory / "haproxy.cfg"
    config.write_text(proxy.config())
    checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, check=False, timeout=30)
    if checked.returncode != 0:
        raise LabError(f"HAProxy refused the lab configuration {config}: {(checked.stderr or checked.stdout)[-1000:]}")
    proxy.socket.unlink(missing_ok=True)
    proc = lab.spawn(proxy.kind, NAME, [HAPROXY, "-db", "-f", str(config)], proxy.directory / "haproxy.log")
    if not wait_until(lambda: _answers(proxy.socket) or not is_ours(proc), 10):
        raise LabError(f"HAProxy did not open its runtime API at {proxy.socket} within 10 s; see {proxy.directory / 'haproxy.log'}")
    if not is_ours(proc):
        raise LabError(f"HAProxy exited at start; see {proxy.directory / 'haproxy.log'}")
    return proc


def _answers(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(1.0)
            conn.connect(str(path))
            conn.sendall(b"show info\n")
            return bool(conn.recv(64))
    except OSError:
        return False


def wait_up(proxy: LabProxy, member: str, timeout: float = 10.0) -> None:
    """Wait until HAProxy's checks see `member` up in the write backend (its first check)."""
    def up() -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(1.0)
                conn.connect(str(proxy.socket))
                conn.sendall(f"show servers state {proxy.write_backend}\n".encode())
                text = b""
                while chunk := conn.recv(65536):
                    text += chunk
        except OSError:
            return False
        for line in text.decode().splitlines():
            fields = line.split()
            if len(fields) > 5 and fields[3] == member:
                return fields[5] == "2"
        return False

    if not wait_until(up, timeout, 0.1):
        raise LabError(f"HAProxy does not see {member} up within {timeout:g} s; see {proxy.directory / 'haproxy.log'}")
