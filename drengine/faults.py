"""Process faults on a member's host, injected over its host transport (see
`transport.member_transport` for how the host is found): SIGKILL for a crash, SIGSTOP for a
hang and SIGCONT to end it; and starting a member again with the inventory's service template."""

from __future__ import annotations

from drengine.errors import InputError
from drengine.inventory import Cluster, Inventory, Member
from drengine.transport import command_text, member_transport, render_service


def start_member(inventory: Inventory, cluster: Cluster, member: Member, timeout: float = 120.0) -> str:
    """Start a member's server with the inventory's `service.start` template, over its host."""
    command = render_service(cluster, member, "start")
    transport = member_transport(inventory, cluster.name, member, f"start {member.name}")
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
    transport = member_transport(inventory, cluster.name, member, f"signal the server process of {member.name}")
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
