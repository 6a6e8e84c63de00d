"""What the MariaDB and Galera backends do on a member's host: run the inventory's service
templates, read the server's pid file and signal the process it names. Drill faults (kill,
hang, resume, start) and the host fences (service, signal) are built from these.

How a member's host is reached: `transport.member_transport`, the one rule (a member without
`host:` is refused, whatever its address). Service commands are rendered by the one renderer,
`transport.render_service`, with the packaged systemd commands as defaults.

A pid file can outlive its process and the pid be reused: a process is only signalled when
/proc on its host shows the server's program under that pid (`mariadbd` or `mysqld`).
"""

from __future__ import annotations

from dataclasses import dataclass

from drengine import transport as transports
from drengine.clock import SYSTEM, Clock, wait_until
from drengine.errors import CommandFailed, InputError
from drengine.inventory import Cluster, Inventory, Member
from drengine.transport import (
    CommandResult,
    HostTransport,
    MemberTransports,
    ServiceAction,
    ShellCommand,
    command_text,
    transport_for,
)

__all__ = ["DEFAULT_DATA_DIR", "DEFAULT_SERVICE", "MemberHosts", "ServerProcess", "ServiceAction", "render_service"]

SERVER_PROGRAMS = ("mariadbd", "mysqld")
DEFAULT_DATA_DIR = "/var/lib/mysql"
# Defaults for systemd hosts with the Debian/RHEL packages.
DEFAULT_SERVICE: dict[ServiceAction, str] = {
    "start": "systemctl start mariadb",
    "stop": "systemctl stop mariadb",
    "bootstrap": "galera_new_cluster",
    "recover": "galera_recovery",
    "status": "systemctl is-active --quiet mariadb",
}


@dataclass(frozen=True)
class ServerProcess:
    """What the member's host says about the pid in its pid file."""

    pid: int | None  # None: no pid file
    alive: bool
    program: str = ""  # from /proc/PID/stat
    note: str = ""
    stopped: bool = False  # SIGSTOPped (state T): alive, but answers nothing until continued

    def describe(self) -> str:
        if self.pid is None:
            return self.note or "no pid file"
        return f"pid {self.pid} " + (f"runs {self.program}" if self.alive else "is gone") + (f" ({self.note})" if self.note else "")


def data_dir_of(member: Member) -> str:
    return member.data_dir or DEFAULT_DATA_DIR


def render_service(cluster: Cluster, member: Member, action: ServiceAction) -> ShellCommand:
    """The exact shell command a service action sends for this member: the inventory's template,
    else the packaged systemd command (values shell-quoted)."""
    return transports.render_service(cluster, member, action, default=DEFAULT_SERVICE[action])


def kill_command(member: Member, signal_name: str) -> str:
    """How an operator would send the signal by hand (shown in plans and gates)."""
    return f"kill -{signal_name} $(cat {member.pid_file or '<no pid_file in the inventory>'})"


def require_pid_file(cluster: Cluster, member: Member) -> str:
    if member.pid_file is None:
        raise InputError(f"cluster {cluster.name}: member {member.name} has no pid_file in the inventory; "
                         f"drengine needs it to find and signal the server process")
    return member.pid_file


class MemberHosts:
    """One transport per inventory host, opened on first use and kept for the run."""

    def __init__(self, cluster: Cluster, inventory: Inventory, clock: Clock = SYSTEM) -> None:
        self.cluster = cluster
        self.inventory = inventory
        self.clock = clock
        self._members = MemberTransports(inventory, cluster.name)
        self._others: dict[str, HostTransport] = {}

    def transport(self, member: Member) -> HostTransport:
        return self._members.of(member, f"run commands on {member.name} (service templates, pid file, signals)")

    def host_transport(self, name: str) -> HostTransport:
        """A host named for something that is not a member (a proxy's runtime API)."""
        if name not in self._others:
            self._others[name] = transport_for(self.inventory.hosts[name], name)
        return self._others[name]

    def run_service(self, action: ServiceAction, member: Member, timeout: float | None = None) -> CommandResult:
        return self.transport(member).run(render_service(self.cluster, member, action), timeout=timeout)

    def process(self, member: Member) -> ServerProcess:
        """Read the pid file on the member's host, then /proc/PID/stat (a zombie counts as gone)."""
        pid_file = require_pid_file(self.cluster, member)
        transport = self.transport(member)
        try:
            text = transport.read_file(pid_file).strip()
        except CommandFailed:
            return ServerProcess(None, False, note=f"no pid file at {pid_file} (the server removes it when it stops)")
        if not text.isdigit():
            raise CommandFailed(f"{member.name}: pid file {pid_file} holds {text[:20]!r}, expected a process id")
        pid = int(text)
        stat = transport.run(["cat", f"/proc/{pid}/stat"], timeout=self.cluster.timeouts.read + 5)
        if not stat.ok or ")" not in stat.stdout:
            return ServerProcess(pid, False, note="stale pid file")
        program = stat.stdout.split("(", 1)[1].rsplit(")", 1)[0]
        state = stat.stdout.rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return ServerProcess(pid, False, program, "exited, not reaped yet")
        if program not in SERVER_PROGRAMS:
            return ServerProcess(pid, False, program, f"stale pid file: the pid now runs {program}, not the server")
        if state == "T":
            return ServerProcess(pid, True, program, "stopped (SIGSTOP)", stopped=True)
        return ServerProcess(pid, True, program)

    def signal(self, member: Member, signal_name: str) -> str:
        """Send a signal to the server process found by its pid file; return what was run."""
        found = self.process(member)
        if not found.alive or found.pid is None:
            raise CommandFailed(f"{member.name}: not signalled: {found.describe()}")
        sent = self.transport(member).run(["kill", f"-{signal_name}", str(found.pid)], timeout=10).check()
        # As sent: with the host's sudo when it has `become: true`.
        return f"{sent.command} ({member.name}, pid file {member.pid_file})"

    def resume(self, member: Member) -> str:
        """SIGCONT the server if it is stopped; a running or gone one is left alone."""
        found = self.process(member)
        if not found.stopped:
            return f"{member.name}: nothing to wake: {found.describe()}"
        return self.signal(member, "CONT")

    def wait_gone(self, member: Member, seconds: float) -> bool:
        return wait_until(lambda: not self.process(member).alive, seconds, 0.05, self.clock)

    def start(self, member: Member, timeout: float = 120.0) -> str:
        command = render_service(self.cluster, member, "start")
        self.transport(member).run(command, timeout=timeout).check()
        return command_text(command)

    def close(self) -> None:
        self._members.close()
        for other in self._others.values():
            other.close()
        self._others.clear()
