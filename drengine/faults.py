"""Process faults on a member's host, injected over its host transport (see
`transport.member_transport` for how the host is found): SIGKILL for a crash, SIGSTOP for a
hang and SIGCONT to end it; and starting a member again with the inventory's service template.

Fault injection is a backend operation (`FaultTarget`): drill kits call `kill`, `hang`,
`resume` and `start` on the backend they are given, real or simulated, and never look
inside a simulator. Real backends implement them with `MemberFaults`; simulated twins
change their model.
"""

from __future__ import annotations

from typing import Protocol

from drengine.errors import InputError
from drengine.inventory import Cluster, Inventory, Member
from drengine.transport import ShellCommand, command_text, member_transport, render_service


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
        # As sent: with the host's sudo when it has `become: true`.
        return f"{result.command} ({member.name}, pid file {member.pid_file})"
    finally:
        transport.close()


class FaultTarget(Protocol):
    """What a backend offers drills: each call takes a member name and returns what was done,
    in words (the command run, or the simulated change), for the drill's journal."""

    def kill(self, member: str) -> str:
        """SIGKILL the member's server: a crash."""
        ...

    def hang(self, member: str) -> str:
        """SIGSTOP the member's server: a hang (it still holds its files and ports)."""
        ...

    def resume(self, member: str) -> str:
        """SIGCONT a hung member's server."""
        ...

    def start(self, member: str) -> str:
        """Start a killed member's server again (the inventory's `service.start`)."""
        ...


class MemberFaults:
    """`FaultTarget` for real members: signals through the member's pid file and the start
    template, over the member's host transport."""

    def __init__(self, inventory: Inventory | None, cluster: Cluster) -> None:
        self.inventory = inventory
        self.cluster = cluster

    def _inventory(self, what: str, member: str) -> Inventory:
        if self.inventory is None:
            raise InputError(f"cannot {what} {member} of cluster {self.cluster.name}: this connector was opened "
                             f"without its inventory, which says on which host the member runs")
        return self.inventory

    def kill(self, member: str) -> str:
        return signal_member(self._inventory("kill", member), self.cluster, self.cluster.member(member), "KILL")

    def hang(self, member: str) -> str:
        return signal_member(self._inventory("hang", member), self.cluster, self.cluster.member(member), "STOP")

    def resume(self, member: str) -> str:
        return signal_member(self._inventory("resume", member), self.cluster, self.cluster.member(member), "CONT")

    def start(self, member: str) -> str:
        inventory = self._inventory("start", member)
        return f"started {member}: {start_member(inventory, self.cluster, self.cluster.member(member))}"


class FaultsByProcess:
    """A real backend's fault operations (drills), handed to its `MemberFaults`: the member's
    process over its host, by pid file and start template."""

    _faults: MemberFaults

    def kill(self, member: str) -> str:
        return self._faults.kill(member)

    def hang(self, member: str) -> str:
        return self._faults.hang(member)

    def resume(self, member: str) -> str:
        return self._faults.resume(member)

    def start(self, member: str) -> str:
        return self._faults.start(member)


def resume_member(inventory: Inventory, cluster: Cluster, member: Member) -> str:
    """End a fault: SIGCONT a stopped (hung) server process found by its pid file, or start a
    server whose process is gone with the inventory's `service.start` template."""
    if member.pid_file is not None:
        transport = member_transport(inventory, cluster.name, member, f"resume {member.name}")
        try:
            pid = transport.read_file(member.pid_file).strip() if transport.run(
                ["test", "-f", member.pid_file], timeout=10).ok else ""
            if pid.isdigit() and transport.run(["kill", "-0", pid], timeout=10).ok:
                sent = transport.run(["kill", "-CONT", pid], timeout=10).check()
                return f"{sent.command} ({member.name}, pid file {member.pid_file})"
        finally:
            transport.close()
    return start_member(inventory, cluster, member)


def stop_command(cluster: Cluster, member: Member) -> ShellCommand:
    """The inventory's stop template rendered for this member (what an operator would type)."""
    return render_service(cluster, member, "stop")


def stop_member(inventory: Inventory, cluster: Cluster, member: Member, timeout: float = 60.0) -> str:
    """Stop a member's server with the inventory's `service.stop` template, over its host."""
    command = stop_command(cluster, member)
    transport = member_transport(inventory, cluster.name, member, f"stop {member.name}")
    try:
        transport.run(command, timeout=timeout).check()
    finally:
        transport.close()
    return command_text(command)


def process_gone(inventory: Inventory, cluster: Cluster, member: Member) -> bool | None:
    """Whether the process named by the member's pid file is gone (True), still there (False),
    or unknown (None: no pid file in the inventory)."""
    if member.pid_file is None:
        return None
    transport = member_transport(inventory, cluster.name, member, f"check the server process of {member.name}")
    try:
        if not transport.run(["test", "-f", member.pid_file], timeout=10).ok:
            return True
        pid = transport.read_file(member.pid_file).strip()
        return not (pid.isdigit() and transport.run(["kill", "-0", pid], timeout=10).ok)
    finally:
        transport.close()


class ProcessFaults(MemberFaults):
    """`MemberFaults` plus what fencing needs: stop by the service template, whether the process
    is gone; `resume` also starts a member whose process is gone (kill, then resume)."""

    def resume(self, member: str) -> str:
        return resume_member(self._inventory("resume", member), self.cluster, self.cluster.member(member))

    def stop(self, member: str) -> str:
        return stop_member(self._inventory("stop", member), self.cluster, self.cluster.member(member))

    def gone(self, member: str) -> bool | None:
        return process_gone(self._inventory("check", member), self.cluster, self.cluster.member(member))
