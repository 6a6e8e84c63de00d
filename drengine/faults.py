"""Process faults on a member's host, injected over the host transport (SSH, or local for
members on this machine): SIGKILL for a crash, SIGSTOP for a hang and SIGCONT to end it."""

from __future__ import annotations

from drengine.errors import InputError
from drengine.inventory import Cluster, Inventory, Member, Transport


def _transport(inventory: Inventory, member: Member):  # type: ignore[no-untyped-def]
    from drengine.transport import LocalTransport, transport_for

    if member.host is None:
        return LocalTransport(name="localhost", command_timeout=10)
    host = inventory.hosts[member.host]
    if host.transport is Transport.LOCAL:
        return LocalTransport(name=member.host, command_timeout=10)
    return transport_for(host, member.host)


def start_member(inventory: Inventory, cluster: Cluster, member: Member, timeout: float = 120.0) -> str:
    """Start a member's server with the inventory's `service.start` template, over its host."""
    from drengine.transport import command_text, render_template

    if not cluster.service.start:
        raise InputError(f"cluster {cluster.name} has no `service: start:` template in the inventory; drengine cannot "
                         f"start {member.name}")
    command = render_template(cluster.service.start, name=member.name, address=member.address,
                              port=cluster.port_of(member), data_dir=member.data_dir or "")
    transport = _transport(inventory, member)
    try:
        transport.run(command, timeout=timeout).check()
    finally:
        transport.close()
    return command_text(command)


def signal_member(inventory: Inventory, cluster: Cluster, member: Member, signal_name: str) -> str:
    """Send a signal to the member's server process, found by its pid file; return what was run."""
    if member.pid_file is None:
        raise InputError(
            f"cluster {cluster.name}: member {member.name} has no pid_file in the inventory; drills need it to "
            f"signal the server process"
        )
    transport = _transport(inventory, member)
    try:
        pid = transport.read_file(member.pid_file).strip()
        if not pid.isdigit():
            raise InputError(f"{member.name}: pid file {member.pid_file} holds {pid[:20]!r}, expected a process id; "
                             f"is the server running, and does the inventory's pid_file name its pid file?")
        result = transport.run(["kill", f"-{signal_name}", pid], timeout=10)
        result.check()
        return f"kill -{signal_name} {pid} ({member.name}, pid file {member.pid_file})"
    finally:
        transport.close()


def resume_member(inventory: Inventory, cluster: Cluster, member: Member) -> str:
    """End a fault: SIGCONT a stopped (hung) server process found by its pid file, or start a
    server whose process is gone with the inventory's `service.start` template."""
    if member.pid_file is not None:
        transport = _transport(inventory, member)
        try:
            pid = transport.read_file(member.pid_file).strip() if transport.run(
                ["test", "-f", member.pid_file], timeout=10).ok else ""
            if pid.isdigit() and transport.run(["kill", "-0", pid], timeout=10).ok:
                transport.run(["kill", "-CONT", pid], timeout=10).check()
                return f"kill -CONT {pid} ({member.name}, pid file {member.pid_file})"
        finally:
            transport.close()
    return start_member(inventory, cluster, member)


def stop_member(inventory: Inventory, cluster: Cluster, member: Member, timeout: float = 60.0) -> str:
    """Stop a member's server with the inventory's `service.stop` template, over its host."""
    command = stop_command(cluster, member)
    transport = _transport(inventory, member)
    try:
        transport.run(command, timeout=timeout).check()
    finally:
        transport.close()
    from drengine.transport import command_text

    return command_text(command)


def stop_command(cluster: Cluster, member: Member):  # type: ignore[no-untyped-def]
    """The inventory's stop template rendered for this member (what an operator would type)."""
    from drengine.transport import render_template

    if not cluster.service.stop:
        raise InputError(f"cluster {cluster.name} has no `service: stop:` template in the inventory; drengine cannot "
                         f"stop {member.name}")
    return render_template(cluster.service.stop, name=member.name, address=member.address,
                           port=cluster.port_of(member), data_dir=member.data_dir or "")


def process_gone(inventory: Inventory, member: Member) -> bool | None:
    """Whether the process named by the member's pid file is gone (True), still there (False),
    or unknown (None: no pid file in the inventory)."""
    if member.pid_file is None:
        return None
    transport = _transport(inventory, member)
    try:
        if not transport.run(["test", "-f", member.pid_file], timeout=10).ok:
            return True
        pid = transport.read_file(member.pid_file).strip()
        return not (pid.isdigit() and transport.run(["kill", "-0", pid], timeout=10).ok)
    finally:
        transport.close()


class ProcessFaults:
    """Fault injection on real members, as a backend operation: the member's server process
    over its host transport (kill = SIGKILL, hang = SIGSTOP, resume = SIGCONT or start)."""

    def __init__(self, inventory: Inventory | None, cluster: Cluster) -> None:
        self._inventory = inventory
        self._cluster = cluster

    def _where(self) -> Inventory:
        if self._inventory is None:
            raise InputError(f"cluster {self._cluster.name}: faults on real members need the inventory (hosts, "
                             f"pid files); this backend was opened without one")
        return self._inventory

    def kill(self, member: str) -> str:
        return signal_member(self._where(), self._cluster, self._cluster.member(member), "KILL")

    def hang(self, member: str) -> str:
        return signal_member(self._where(), self._cluster, self._cluster.member(member), "STOP")

    def resume(self, member: str) -> str:
        return resume_member(self._where(), self._cluster, self._cluster.member(member))

    def stop(self, member: str) -> str:
        return stop_member(self._where(), self._cluster, self._cluster.member(member))

    def gone(self, member: str) -> bool | None:
        return process_gone(self._where(), self._cluster.member(member))
