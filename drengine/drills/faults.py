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
            raise InputError(f"{member.name}: pid file {member.pid_file} holds {pid[:20]!r}, not a process id")
        result = transport.run(["kill", f"-{signal_name}", pid], timeout=10)
        result.check()
        return f"kill -{signal_name} {pid} ({member.name}, pid file {member.pid_file})"
    finally:
        transport.close()
