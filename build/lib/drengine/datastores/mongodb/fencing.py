"""Fencing the members a forced reconfig removes, before it is sent: a removed member that
comes back with its old config and sees a majority of its old voters elects a second primary
(split brain). Each removed member is stopped by the first method that works, in the order the
inventory gives (`fence:`): `sql` (its own commands: replSetStepDown, then shutdown, when it
answers), `service` (the inventory's stop template over its host), `signal` (SIGKILL by its pid
file over its host: this reaches a hung process, which ignores SIGTERM until it wakes).

A member whose port refuses connections is already down; it is still fenced when a method is
configured (a stop keeps a service manager from starting it again). A removed member neither
confirmed down nor fenced makes the forced reconfig's dangerous gate say "split brain" plainly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from drengine.datastores.mongodb.setview import SetView, command_text
from drengine.inventory import Cluster, FenceMethod
from drengine.steps import Fact, Statement, fact

STEP_DOWN_SECONDS = 60
SHUTDOWN_WAIT_SECONDS = 10.0  # for the port to close after a stop or a kill


@fact
class FenceOutcome(Fact):
    member: str
    host: str  # its host string in the old config
    status: Literal["fenced", "down", "unfenced"]
    method: str = ""  # the method that fenced it
    attempts: list[str] = Field(default_factory=list)  # each method tried, what it sent, how it went

    def line(self) -> str:
        words = {"fenced": f"FENCED by {self.method}", "down": "DOWN (its port refuses connections)",
                 "unfenced": "NOT FENCED and not confirmed down"}[self.status]
        return f"{self.member} ({self.host}): {words}" + (f"; {'; '.join(self.attempts)}" if self.attempts else "")


@fact
class FenceReport(Fact):
    outcomes: list[FenceOutcome] = Field(default_factory=list)

    def unfenced(self) -> list[FenceOutcome]:
        return [o for o in self.outcomes if o.status == "unfenced"]


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


def split_brain_risk(report: FenceReport | None, removed: list[tuple[str, str, str]]) -> str | None:
    """The split-brain warning for the forced reconfig's gate, when a removed member may still run."""
    if report is None:
        left = [f"{name} ({seen})" for name, _, seen in removed if "refused" not in seen.lower()]
    else:
        left = [o.line() for o in report.unfenced()]
    if not left:
        return None
    return ("SPLIT BRAIN: " + "; ".join(left) + ". A removed member that is still running (hung, or cut off by the "
            "network) keeps its old config: when it wakes or the network heals and it sees a majority of its old "
            "voters, it elects a second primary, and writes go to two primaries. Stop it first (service stop, or "
            "kill -9 of its pid) or make sure it cannot come back")
