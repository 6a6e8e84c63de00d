"""The fault space of galera-bootstrap-survivor, for `drengine explore`: generated clusters
after a loss of quorum (nodes running, hung, stopped cleanly or killed, each at its own
seqno, some from another cluster history, partitions, a Primary component still alive or
not, what grastate.dat says and the gcache), and the invariants, computed from the
simulator's own nodes:

- a bootstrap (a Primary component appearing where there was none) starts from the highest
  committed seqno of the nodes that could be read (running and answering, or stopped with
  their data on disk), unless the operator accepted losing that node's writes;
- never two Primary components (two sides each Primary), unless the operator accepted it;
- the goal (success implies it): one Primary component, every running node in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from drengine.datastores.galera.sim import SimGalera, SimNode
from drengine.explore.kit import Kit, Ledger, Situation, Violation, Watch, digits, pick
from drengine.explore.scenario import MemberSpec
from drengine.journal import Entry
from drengine.simstate import Parse

HISTORY = "6d3c7a8e-1b2c-4d5e-9f00-000000000001"
OTHER_HISTORY = "6d3c7a8e-1b2c-4d5e-9f00-0000000000ff"

CLUSTER = digits(3)
NODE = digits(5)


def _member(i: int) -> MemberSpec:
    return MemberSpec(name=f"g{i + 1}", address=f"127.0.2.{11 + i}", port=3306)


@st.composite
def quorum_lost(draw: st.DrawFn) -> Situation:
    c = draw(CLUSTER)
    count = pick(c[0], 3, 2, 4, 5, percent=60)
    nodes = []
    for i in range(count):
        m = _member(i)
        d = draw(NODE)  # one draw per node (see kit.digits)
        process = pick(d[0], "killed", "running", "stopped", "hung", percent=40)
        seqno = 100 + pick(d[1], 0, 1, 3, 8, percent=50)
        uuid = pick(d[2], HISTORY, OTHER_HISTORY, percent=92)
        known = pick(d[3], False, True, percent=85)  # a killed node's grastate.dat says -1
        grastate = seqno if process == "stopped" or (process == "killed" and known) else -1
        nodes.append(SimNode(name=m.name, address=m.address, port=m.port, process=process, seqno=seqno, uuid=uuid,
                             grastate_seqno=grastate, side=pick(d[4], 0, 1, percent=85), primary=False))
    stopped = [n for n in nodes if n.process == "stopped"]
    if stopped:  # Galera marks safe_to_bootstrap on the last node to leave cleanly
        max(stopped, key=lambda n: n.seqno).safe_to_bootstrap = True
    last = [n.name for n in nodes]
    if pick(c[1], "all", "subset", percent=70) == "subset":
        last = [n.name for n in nodes if n.process == "running" or n.name == nodes[0].name]
    sim = SimGalera(nodes=nodes, state_uuid=HISTORY, last_primary=last, gcache_low=pick(c[2], 0, 50, 200, percent=70))
    sim.settle()  # running nodes holding a majority of the last Primary component are Primary
    label = ", ".join(f"{n.name} {n.process} {n.seqno}{'*' if n.uuid != HISTORY else ''}"
                      f"{' side ' + str(n.side) if n.side else ''}{' Primary' if n.primary else ''}" for n in sim.nodes)
    return Situation(label, [_member(i) for i in range(count)], sim.model_dump(mode="json"))


def components(sim: SimGalera) -> dict[int, list[SimNode]]:
    sides: dict[int, list[SimNode]] = {}
    for n in sim.nodes:
        if n.process == "running" and n.primary:
            sides.setdefault(n.side, []).append(n)
    return sides


@dataclass(frozen=True)
class Seen:
    """What the watch keeps of the last event (a copy of the whole model costs too much)."""

    primary: bool  # some Primary component existed
    nodes: tuple[tuple[str, str, str, int], ...]  # name, process, history, seqno


class GaleraWatch(Watch):
    def __init__(self) -> None:
        self.before: Seen | None = None

    def after_event(self, entry: Entry, model: Any, ledger: Ledger) -> list[Violation]:
        if model is None:
            return []
        sim: SimGalera = model
        primary = components(sim)
        before = self.before
        self.before = Seen(bool(primary), tuple((n.name, n.process, n.uuid, n.seqno) for n in sim.nodes))
        found = []
        if len(primary) > 1 and not ledger.chose("split") and not ledger.overrides:
            shown = " | ".join(", ".join(n.name for n in side) for side in primary.values())
            found.append(Violation("galera.one-primary-component", f"{len(primary)} Primary components: {shown}"))
        if before is not None and not before.primary and primary:
            found += self._bootstrapped(before, [n for side in primary.values() for n in side], ledger)
        return found

    def _bootstrapped(self, before: Seen, now: list[SimNode], ledger: Ledger) -> list[Violation]:
        """A Primary component appeared: its position must be the highest one that could be read
        (a node's position can be read unless it is hung: running, or on disk)."""
        have = max(n.seqno for n in now)
        history = now[0].uuid
        found = []
        for name, process, uuid, seqno in before.nodes:
            if process == "hung" or uuid != history or seqno <= have or ledger.chose(name):
                continue
            found.append(Violation("galera.bootstrap-most-advanced",
                                   f"a Primary component was bootstrapped at seqno {have} ({', '.join(m.name for m in now)}) "
                                   f"while {name} ({process}) held seqno {seqno} of the same history, and no "
                                   f"approved risk named {name}"))
        return found


def primary_component_goal(sim: SimGalera) -> str | None:
    primary = components(sim)
    if len(primary) != 1:
        return f"{len(primary)} Primary components"
    side = next(iter(primary))
    for n in sim.nodes:
        if n.process == "running" and not (n.primary and n.side == side):
            return f"{n.name} runs outside the Primary component"
    return None


class GaleraKit(Kit):
    kind = "galera"
    runbooks = ("galera-bootstrap-survivor",)
    ops = ("kill", "hang", "resume")
    flaps = ("kill", "hang")
    timeouts = {"connect": 1, "read": 2, "catch_up": 10}

    def situations(self, runbook: str) -> st.SearchStrategy[Situation]:
        return quorum_lost()

    def model(self, backend: Any) -> Any:
        return backend.sim

    def load(self, state: dict[str, Any]) -> Any:
        return SimGalera.model_validate(state)

    def saved_state(self) -> Parse[Any]:
        return SimGalera

    def applies(self, model: Any, op: str, member: str) -> bool:
        n: SimNode = model.node(member)
        return {"kill": n.process in ("running", "hung"), "hang": n.process == "running",
                "resume": n.process == "hung"}.get(op, True)

    def goal(self, runbook: str, model: Any, watch: Watch) -> str | None:
        return primary_component_goal(model)

    def watch(self, runbook: str) -> Watch:
        return GaleraWatch()

    def mutating(self, language: str, text: str) -> bool:
        upper = text.lstrip().upper()
        if language == "shell":
            return any(word in text for word in ("systemctl start", "systemctl stop", "galera_new_cluster", "sed -i"))
        return not upper.startswith(("SELECT", "SHOW", "SET SESSION"))

    def once(self, language: str, text: str) -> bool:
        # A second bootstrap makes a second cluster; starting a running node only fails.
        return "galera_new_cluster" in text or "pc.bootstrap=YES" in text

    def inventory(self, name: str, members: list[MemberSpec]) -> dict[str, Any]:
        cluster = super().inventory(name, members)
        for member in cluster["members"]:
            member["data_dir"] = "/var/lib/mysql"
        return cluster


KIT = GaleraKit()
