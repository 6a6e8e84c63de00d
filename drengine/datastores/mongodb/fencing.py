"""Fencing the members a forced reconfig removes, before it is sent: a removed member that
comes back with its old config and sees a majority of its old voters elects a second primary
(split brain). Each removed member is stopped by the first method that works, in the order the
inventory gives (`fence:`): `sql` (its own commands: replSetStepDown, then shutdown, when it
answers), `service` (the inventory's stop template over its host), `signal` (SIGKILL by its pid
file over its host: this reaches a hung process, which ignores SIGTERM until it wakes).

A member whose port refuses connections is down now, but a refused connection is not a fence:
its service manager, a reboot or a colleague can start it again, with its old config. It is
fenced only by a method that worked (a service stop keeps a service manager from starting it
again; SIGKILL by pid file reaches a hung process). A removed member left UNFENCED makes the
fence step refuse (`fence_refusal`: what it risks, how to fence it by hand; an operator who
fenced it by hand overrides), and the forced reconfig's dangerous gate say "split brain" plainly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from drengine.datastores.mongodb.setview import SetView, command_text
from drengine.faults import stop_command
from drengine.inventory import Cluster, FenceMethod
from drengine.steps import Fact, Refusal, Statement, fact
from drengine.transport import command_text as command_text_of

STEP_DOWN_SECONDS = 60
SHUTDOWN_WAIT_SECONDS = 10.0  # for the port to close after a stop or a kill


@fact
class FenceOutcome(Fact):
    member: str
    host: str  # its host string in the old config
    # "down" only in journals of earlier versions, which took a refused connection for a fence.
    status: Literal["fenced", "down", "unfenced"]
    method: str = ""  # the method that fenced it
    attempts: list[str] = Field(default_factory=list)  # each method tried, what it sent, how it went
    down: str = ""  # why it was down when the step looked (its port refused connections): not a fence

    def line(self) -> str:
        if self.status == "fenced":
            words = f"FENCED by {self.method}" + (f" (down already: {self.down})" if self.down else "")
        else:
            down = self.down or ("its port refuses connections" if self.status == "down" else "")
            words = (f"UNFENCED (down now: {down}; but nothing keeps it down)" if down else
                     "UNFENCED and not confirmed down (it may still run)")
        return f"{self.member} ({self.host}): {words}" + (f"; {'; '.join(self.attempts)}" if self.attempts else "")


@fact
class FenceReport(Fact):
    outcomes: list[FenceOutcome] = Field(default_factory=list)

    def unfenced(self) -> list[FenceOutcome]:
        return [o for o in self.outcomes if o.status != "fenced"]


@dataclass(frozen=True)
class FenceAttempt:
    """What one fencing method did on one member: the exact commands, and whether the member is
    now down (its port refuses connections, or its process is gone)."""

    ok: bool
    statements: list[Statement] = field(default_factory=list)
    detail: str = ""


def sql_statements(member: str, primary: bool) -> list[Statement]:
    """The member's own commands: step down (a primary), then shut down."""
    stmts = []
    if primary:
        stmts.append(Statement(member, command_text({"replSetStepDown": STEP_DOWN_SECONDS, "force": True}),
                               language="mongodb"))
    stmts.append(Statement(member, command_text({"shutdown": 1, "force": True}), language="mongodb"))
    return stmts


def usable_methods(cluster: Cluster, member: str) -> list[tuple[FenceMethod, str | None]]:
    """The inventory's methods in its order, each with why it cannot be used here (None: usable)."""
    entry = cluster.member(member)
    out: list[tuple[FenceMethod, str | None]] = []
    for method in cluster.fence_methods():
        why: str | None = None
        if method is FenceMethod.SERVICE and not cluster.service.stop:
            why = "the inventory has no `service: stop:` template"
        elif method is FenceMethod.SIGNAL and entry.pid_file is None:
            why = f"the inventory gives {member} no `pid_file:`"
        elif method is FenceMethod.PROXY:
            why = "MongoDB clients find the primary themselves: no proxy to take it out of"
        out.append((method, why))
    return out


def removed_members(view: SetView, removed_hosts: list[str]) -> list[tuple[str, str, str]]:
    """(inventory name, config host, what drengine saw) of each member the forced config removes."""
    out = []
    for host in removed_hosts:
        name = view.name_of(host)
        member = view.by_config_host(host)
        seen = "not in the inventory" if member is None else (
            f"answers in state {member.state or 'unknown'}" if member.reachable else f"unreachable: {member.error}")
        out.append((name, host, seen))
    return out


def by_hand(cluster: Cluster, member: str) -> str:
    """How an operator fences one member by hand, on its host (what drengine would have sent)."""
    entry = cluster.member(member) if member in {m.name for m in cluster.members} else None
    stop = (f"`{command_text_of(stop_command(cluster, entry))}`" if entry is not None and cluster.service.stop else
            "`systemctl stop mongod` and `systemctl disable mongod` (so that no reboot starts it)")
    kill = (f"`kill -KILL $(cat {entry.pid_file})`" if entry is not None and entry.pid_file else
            "`kill -9` of its mongod process (a hung one ignores SIGTERM)")
    return f"{stop}, or {kill}"


def _state(outcome: FenceOutcome) -> str:
    down = outcome.down or ("its port refuses connections" if outcome.status == "down" else "")
    return f"down now ({down}), but nothing keeps it down" if down else "not confirmed down: it may still run"


def fence_refusal(cluster: Cluster, report: FenceReport) -> Refusal | None:
    """The fence step's verdict: every removed member fenced, or a refusal naming each one left
    UNFENCED (down now or not), what that risks, and how to fence it by hand."""
    left = report.unfenced()
    if not left:
        return None
    names = ", ".join(o.member for o in left)
    ways: dict[str, list[str]] = {}
    for o in left:
        ways.setdefault(by_hand(cluster, o.member), []).append(o.member)
    return Refusal(
        observed="UNFENCED: " + "; ".join(f"{o.member} ({_state(o)})" for o in left)
                 + " (each method tried is in the evidence)",
        expected="every member the forced config removes fenced by a method that worked (its service stopped, "
                 "its process killed by pid file, or its own shutdown), so that it cannot start again with its old "
                 "config",
        why="a refused connection is not a fence: a member down now can be started again by its service manager, a "
            "reboot or a colleague, and a removed member that runs with its old config and sees a majority of its old "
            "voters (cut off from the new set) elects a second primary: writes go to two primaries, and one side's "
            "are rolled back when they meet",
        next_steps="fence by hand, on each member's host, then override this check (break glass): " + "; ".join(
            f"{', '.join(members)}: {how}" for how, members in ways.items())
                   + ". Or add `service: stop:` or the members' `pid_file:` to the inventory and rerun",
        risk_if_overridden=f"SPLIT BRAIN if {names} start(s) again with the old config before being wiped: a second "
                           f"primary beside the new one, and the writes one of them takes are lost",
    )


def split_brain_risk(report: FenceReport | None, removed: list[tuple[str, str, str]]) -> str | None:
    """The split-brain warning for the forced reconfig's gate, when a removed member may run again
    (without a fence report, the fence step was skipped: a member down now is not fenced)."""
    if report is None:
        left = [f"{name} ({seen}; NOT FENCED)" for name, _, seen in removed]
    else:
        left = [o.line() for o in report.unfenced()]
    if not left:
        return None
    return ("SPLIT BRAIN: " + "; ".join(left) + ". A removed member that is still running (hung, or cut off by the "
            "network) keeps its old config: when it wakes or the network heals and it sees a majority of its old "
            "voters, it elects a second primary, and writes go to two primaries. Stop it first (service stop, or "
            "kill -9 of its pid) and make sure nothing starts it again")
