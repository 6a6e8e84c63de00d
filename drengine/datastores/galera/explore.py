"""The fault space of galera-bootstrap-survivor, for `drengine explore`, and its invariants,
judged against an ORACLE computed from the simulator's own nodes (this module never imports
the runbook's decisions or actions).

The fault space: clusters after a loss of quorum, 2 to 5 nodes running, hung, stopped cleanly
or killed, each at its own seqno (member order says nothing of seqno order), now and then a
node of ANOTHER cluster history (a node bootstrapped on its own once, or a stray), often with
a higher seqno than every node of the real history; grastate.dat as Galera writes it
(seqno -1 after a crash, safe_to_bootstrap on the last node to leave cleanly), partitions,
hosts, pid files and an HAProxy in front, so fencing and traffic switching really run; and
scenarios where the operator names the node to bootstrap (`--input bootstrap=NODE`).

The oracle. Which history is the cluster's? Every node's grastate.dat (and a running node's
wsrep_cluster_state_uuid) names the history its data belongs to; the nodes of the last
Primary component all hold the same one, and a node of another history was not in it. The
cluster's history is therefore the one the MAJORITY of nodes holds; when two histories are
held by as many nodes each, no recovery can tell which is the cluster's and the oracle names
none (any bootstrap is then the operator's call). The best bootstrap any recovery could pick
is the highest seqno within that history, over every node whose data still exists: running,
hung (a recovery can stop it and read its grastate.dat, as fencing does) or down on disk.

The invariants:
- galera.bootstrap-own-history: a Primary component that appears holds the cluster's history;
- galera.bootstrap-most-advanced: it starts from the best seqno of that history; a node
  further on loses its writes when it rejoins;
  both excused only when the operator named a node of the new component (or the node that
  loses, as gone) or overrode a refused check: never by a risk text;
- galera.one-primary-component: never two Primary components, unless a check was overridden;
- galera.process-started-without-gate: mariadbd is started on a host (a --wsrep-recover, a
  bootstrap, a start: the simulator records each) only by a step whose gate was approved;
- effects.no-second-primary-after-done: after a DONE run, reviving every hung node (in a copy
  of the final state) forms no second Primary component;
- the goal (success implies it): one Primary component, every node that runs or could be
  started (down, not gone for good) Synced in it, and the proxies' write backends only on it;
- liveness (`expect_done`): every node down, hung or non-Primary, in one group, one history
  held by a majority and its best seqno on a running node when any runs (else on a node that
  is down, not only on a hung one): a recovery with every gate approved ends DONE with every
  node back in the Primary component.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from drengine.datastores.galera.sim import SimGalera, SimNode
from drengine.explore.kit import Kit, Ledger, Situation, Violation, Watch, digits, pick, portion
from drengine.explore.scenario import MemberSpec
from drengine.journal import Entry
from drengine.simstate import Parse

HISTORY = "6d3c7a8e-1b2c-4d5e-9f00-000000000001"
OTHER_HISTORY = "6d3c7a8e-1b2c-4d5e-9f00-0000000000ff"
WRITE_BACKEND = "galera_write"

CLUSTER = digits(5)
NODE = digits(6)


def _member(i: int) -> MemberSpec:
    return MemberSpec(name=f"g{i + 1}", address=f"127.0.2.{11 + i}", port=3306)


def _node(i: int, d: list[int]) -> SimNode:
    m = _member(i)
    process = pick(d[0], "killed", "running", "stopped", "hung", percent=34)
    foreign = pick(d[2], False, True, percent=85)
    # A stray history is often further on: ranked across histories, it would win.
    seqno = 100 + (portion(d[1], 9) if not foreign else 5 + portion(d[1], 20))
    known = pick(d[3], False, True, percent=80)  # a killed node's grastate.dat says -1, unless it was written
    grastate = seqno if process == "stopped" or (process == "killed" and known) else -1
    return SimNode(name=m.name, address=m.address, port=m.port, process=process, seqno=seqno,
                   uuid=OTHER_HISTORY if foreign else HISTORY, grastate_seqno=grastate,
                   side=pick(d[4], 0, 1, percent=90), primary=False)


@st.composite
def quorum_lost(draw: st.DrawFn) -> Situation:
    c = draw(CLUSTER)
    count = pick(c[0], 3, 2, 4, 5, percent=55)
    nodes = [_node(i, draw(NODE)) for i in range(count)]
    if pick(c[4], "plain", "partitioned", percent=88) == "partitioned":
        # A partition cut the last node(s) off a cluster that kept running: the larger side keeps
        # quorum (Primary), the other side runs non-Primary and must not be bootstrapped.
        for i, n in enumerate(nodes):
            n.process, n.uuid, n.grastate_seqno = "running", HISTORY, -1
            n.side = 1 if i >= count - max(1, (count - 1) // 2) else 0
    for n in [n for n in nodes if n.process == "stopped"][-1:]:
        n.safe_to_bootstrap = True  # Galera marks it on the last node to leave cleanly
    ours = [n.name for n in nodes if n.uuid == HISTORY] or [nodes[0].name]
    last = ours
    if pick(c[1], "all", "subset", percent=70) == "subset":  # the component had shrunk before it was lost
        last = [n for n in ours if nodes[int(n[1:]) - 1].process == "running"] or ours[:1]
    sim = SimGalera(nodes=nodes, state_uuid=HISTORY, last_primary=last, gcache_low=pick(c[2], 0, 50, 200, percent=70))
    sim.settle()  # running nodes holding a majority of the last Primary component are Primary
    label = ", ".join(f"{n.name} {n.process} {n.seqno}{'*' if n.uuid != HISTORY else ''}"
                      f"{' side ' + str(n.side) if n.side else ''}{' Primary' if n.primary else ''}" for n in sim.nodes)
    inputs: dict[str, str] = {}
    # The operator names the node to bootstrap: a running one when some run, else one that is down
    # (a node that is down cannot be bootstrapped beside running ones: the runbook says stop them first).
    named_among = [n for n in nodes if n.process == "running"] or [n for n in nodes if n.process != "hung"]
    if pick(c[3], False, True, percent=90) and named_among:
        named = named_among[c[3] % len(named_among)].name
        inputs = {"bootstrap": named}
        label += f"; --input bootstrap={named}"
    return Situation(label, [_member(i) for i in range(count)], sim.model_dump(mode="json"), inputs)


# -- the oracle -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Best:
    """The best bootstrap any recovery could pick from a state."""

    history: str | None  # the history the majority of nodes holds; None on a tie
    seqno: int  # the highest seqno of that history (-1 without a history)
    holders: tuple[str, ...]  # the nodes at it


def best_bootstrap(sim: SimGalera, gone: list[str] | tuple[str, ...] = ()) -> Best:
    """The cluster's history (held by most nodes) and its highest seqno over every node whose
    data exists (running, hung, or on disk), leaving out the nodes declared gone for good."""
    counts = Counter(n.uuid for n in sim.nodes).most_common()
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return Best(None, -1, ())
    history = counts[0][0]
    mine = [n for n in sim.nodes if n.uuid == history and n.name not in gone]
    if not mine:
        return Best(history, -1, ())
    top = max(n.seqno for n in mine)
    return Best(history, top, tuple(n.name for n in mine if n.seqno == top))


def components(sim: SimGalera) -> dict[int, list[SimNode]]:
    sides: dict[int, list[SimNode]] = {}
    for n in sim.nodes:
        if n.process == "running" and n.primary:
            sides.setdefault(n.side, []).append(n)
    return sides


def revived(sim: SimGalera) -> SimGalera:
    """A copy of the state with every hung node woken up: what the run left behind once they come back."""
    copy = sim.model_copy(deep=True)
    for n in copy.nodes:
        if n.process == "hung":
            n.process = "running"
    copy.settle()
    return copy


# -- the watch ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """What the watch keeps of the last event (a copy of the whole model costs too much)."""

    primary: bool  # some Primary component existed
    nodes: tuple[tuple[str, str, str, int], ...]  # name, process, history, seqno

    @staticmethod
    def of(sim: SimGalera) -> Seen:
        return Seen(bool(components(sim)), tuple((n.name, n.process, n.uuid, n.seqno) for n in sim.nodes))

    def sim(self) -> SimGalera:
        nodes = [SimNode(name=name, address="", port=0, process=process, uuid=uuid, seqno=seqno)
                 for name, process, uuid, seqno in self.nodes]
        return SimGalera(nodes=nodes, state_uuid="", last_primary=[])


class GaleraWatch(Watch):
    def __init__(self) -> None:
        self.before: Seen | None = None
        self.ledger = Ledger()
        self.launched = 0  # processes the hosts had started (the simulator's `launched`)
        self.approved: set[str] = set()  # steps whose gate said proceed, until they finish

    def world(self, model: Any, what: str) -> None:
        # The explorer's own change (a hung node woken into a majority forms a Primary component
        # by itself): the baseline is the world after it, so the run is not blamed for it.
        self.before = Seen.of(model)

    def after_event(self, entry: Entry, model: Any, ledger: Ledger) -> list[Violation]:
        self.ledger = ledger
        if model is None:
            return []
        sim: SimGalera = model
        primary = components(sim)
        before = self.before
        self.before = Seen.of(sim)
        found = self._launched(entry, sim, ledger)
        if len(primary) > 1 and not ledger.overrides:
            shown = " | ".join(", ".join(n.name for n in side) for side in primary.values())
            found.append(Violation("galera.one-primary-component", f"{len(primary)} Primary components: {shown}"))
        if before is not None and not before.primary and primary:
            found += bootstrapped(before, [n for side in primary.values() for n in side], ledger)
        return found

    def _launched(self, entry: Entry, sim: SimGalera, ledger: Ledger) -> list[Violation]:
        """Starting mariadbd on a host (a recovery, a bootstrap, a start) changes the node: only a
        step whose gate the operator approved may do it."""
        kind, step = entry.type.value, str(entry.data.get("step", ""))
        if kind == "gate_answered":
            if entry.data.get("answer") == "proceed":
                self.approved.add(step)
        elif kind == "step_finished":
            self.approved.discard(step)
        elif kind == "run_resumed":
            self.approved.clear()
        started, self.launched = sim.launched[self.launched:], len(sim.launched)
        if not started or ledger.step in self.approved:
            return []
        return [Violation("galera.process-started-without-gate",
                          f"step {ledger.step or '-'} started mariadbd on a host ({'; '.join(started)}) without an "
                          f"approved gate")]

    def at_end(self, model: Any, ledger: Ledger, success: bool) -> list[Violation]:
        if not success or model is None or ledger.overrides:
            return []
        after = components(revived(model))
        if len(after) <= 1:
            return []
        shown = " | ".join(", ".join(n.name for n in side) for side in after.values())
        return [Violation("effects.no-second-primary-after-done",
                          f"the run ended DONE, but once the hung nodes wake up there are {len(after)} Primary "
                          f"components: {shown}")]


def bootstrapped(before: Seen, now: list[SimNode], ledger: Ledger) -> list[Violation]:
    """A Primary component appeared: it must hold the cluster's history at its best seqno, as the
    oracle saw the world just before, unless the operator named the node or overrode a check."""
    if ledger.overrides or any(ledger.chose(n.name) for n in now):
        return []
    best = best_bootstrap(before.sim(), ledger.gone)
    if best.history is None or best.seqno < 0:
        return []
    names = ", ".join(n.name for n in now)
    history, have = now[0].uuid, max(n.seqno for n in now)
    if history != best.history:
        return [Violation("galera.bootstrap-own-history",
                          f"a Primary component was bootstrapped from another cluster history ({names} at "
                          f"{history}:{have}) while the majority of nodes hold {best.history}, best at seqno "
                          f"{best.seqno} on {', '.join(best.holders)}; the operator named none of them")]
    if have >= best.seqno:
        return []
    losers = [h for h in best.holders if not ledger.chose(h)]
    if not losers:
        return []
    return [Violation("galera.bootstrap-most-advanced",
                      f"a Primary component was bootstrapped at seqno {have} ({names}) while "
                      f"{', '.join(losers)} held seqno {best.seqno} of the same history (its last "
                      f"{best.seqno - have} writes are lost when it rejoins); the operator named neither")]


def goal_holds(sim: SimGalera, gone: list[str]) -> str | None:
    """One Primary component; every node that runs, or is down and could be started, in it; the
    proxies' write backends ready only on its nodes. Hung nodes cannot be judged (or started)."""
    primary = components(sim)
    if len(primary) != 1:
        return f"{len(primary)} Primary components"
    side = next(iter(primary))
    for n in sim.nodes:
        if n.process == "running" and not (n.primary and n.side == side):
            return f"{n.name} runs outside the Primary component"
        if n.process in ("stopped", "killed") and n.name not in gone:
            return f"{n.name} is {n.process} and did not rejoin the Primary component"
    members = {n.name for n in primary[side]}
    for proxy in sim.proxies:
        ready = {s for s, state in proxy.admin.get(WRITE_BACKEND, {}).items()
                 if state == "ready" and sim.node(s).process in ("running", "hung")}
        if not ready or ready - members:
            return (f"proxy {proxy.name} sends writes to {', '.join(sorted(ready)) or 'no node'}, not only to the "
                    f"Primary component ({', '.join(sorted(members))})")
    return None


def recovery_possible(sim: SimGalera) -> str | None:
    """The liveness oracle: the situations where a correct recovery, every gate approved, brings
    every node back into one Primary component; None where it needs a person or cannot be told."""
    if components(sim):
        return None
    if len({n.side for n in sim.nodes}) > 1:
        return None  # a partition: nodes on the other side can neither be bootstrapped with it nor join
    best = best_bootstrap(sim)
    if best.history is None:
        return None
    seen = sim.model_copy(update={"nodes": [n for n in sim.nodes if n.process != "hung"]})
    if best_bootstrap(seen).history != best.history:
        return None  # only the hung nodes' histories (unknown until fenced) make it the majority's
    running = [n for n in sim.nodes if n.process == "running"]
    # The best data must be where a recovery bootstraps without a person's call: on a running node
    # when some run (a node that is down further on needs the running ones stopped first), else on a
    # node that is down. A hung node no further on is fenced (stopped), read again, and started.
    eligible = running or [n for n in sim.nodes if n.process in ("stopped", "killed")]
    if not any(n.name in best.holders for n in eligible):
        return None
    where = "a running node" if running else "every node down"
    if any(n.process == "hung" for n in sim.nodes):
        where += ", a hung node no further on"
    return (f"{where}, one history held by the majority ({best.history[-4:]}), its best seqno {best.seqno} on "
            f"{', '.join(best.holders)}: a bootstrap there and every other node started rejoins them all")


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
        gone = watch.ledger.gone if isinstance(watch, GaleraWatch) else []
        return goal_holds(model, gone)

    def watch(self, runbook: str) -> Watch:
        return GaleraWatch()

    def expect_done(self, runbook: str, start: Any) -> str | None:
        return recovery_possible(start)

    def mutating(self, language: str, text: str) -> bool:
        upper = text.lstrip().upper()
        if language == "shell":
            # --wsrep-recover starts mariadbd (in recovery mode) on the host: never in a plan, never ungated.
            return any(word in text for word in ("systemctl start", "systemctl stop", "galera_new_cluster", "sed -i",
                                                 "--wsrep-recover", "galera_recovery", "SIGKILL", "set server", "shutdown sessions"))
        return not upper.startswith(("SELECT", "SHOW", "SET SESSION"))

    def once(self, language: str, text: str) -> bool:
        # A second bootstrap makes a second cluster; starting a running node only fails.
        return "galera_new_cluster" in text or "pc.bootstrap=YES" in text

    def hosts(self, work: Path) -> dict[str, Any]:
        return {f"gh{i + 1}": {"address": f"127.0.2.{11 + i}"} for i in range(5)}

    def inventory(self, name: str, members: list[MemberSpec]) -> dict[str, Any]:
        cluster = super().inventory(name, members)
        for i, member in enumerate(cluster["members"]):
            member.update(data_dir="/var/lib/mysql", host=f"gh{i + 1}", pid_file="/run/mysqld/mysqld.pid")
        servers = {m.name: m.name for m in members}
        cluster["proxies"] = [{
            "name": "haproxy1", "api": {"socket": "/run/haproxy/admin.sock"},
            "frontend": {"address": "127.0.2.10", "port": 3306}, "rejoined": "ready",
            "backends": [{"name": WRITE_BACKEND, "servers": servers},
                         {"name": "galera_read", "role": "read", "servers": dict(servers)}],
        }]
        return cluster


KIT = GaleraKit()
