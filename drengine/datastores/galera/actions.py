"""MariaDB Galera: the pure decisions (is a Primary component still alive? which node is the
most advanced, from running nodes or from what crashed nodes saved on disk?) and the steps
of the `galera-bootstrap-survivor` runbook.

Bootstrapping the wrong node loses every write the more advanced nodes had; bootstrapping
both sides of a partition makes two clusters whose data diverge. The decisions therefore
refuse while any node is Primary and while two separate non-Primary groups could each be
bootstrapped, and they name every node whose position could not be read as a risk.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from drengine.datastores.galera.connector import (
    STATUS_SQL,
    SYNC_WAIT_OFF,
    GaleraAPI,
    GaleraView,
    NodeView,
    grastate_statement,
    safe_to_bootstrap_command,
)
from drengine.datastores.mariadb.connector import HEARTBEAT_DDL, Sql
from drengine.errors import CommandFailed, ConnectError, DrengineError, StepFailed
from drengine.steps import (
    Action,
    Effect,
    Fact,
    GateLevel,
    Mode,
    NoParams,
    Proposal,
    Refusal,
    RunContext,
    Statement,
    StepParams,
    StepResult,
    fact,
    register,
)
from drengine.transport import command_text

# -- facts -----------------------------------------------------------------------------------------


@fact
class DiskPosition(Fact):
    """Where a stopped node's data ends, read on its host."""

    name: str
    uuid: str = ""
    seqno: int = -1
    safe_to_bootstrap: bool = False
    source: str = ""  # grastate.dat, --wsrep-recover; empty when unknown
    running: bool = False  # the host says its mariadbd still runs (hung?): nothing was read
    error: str = ""

    @property
    def known(self) -> bool:
        return self.seqno >= 0 and not self.running and not self.error


@fact
class DiskPositions(Fact):
    positions: list[DiskPosition]


@fact
class Candidate(Fact):
    name: str
    uuid: str
    seqno: int
    source: str
    safe_to_bootstrap: bool = False


Branch = Literal["running", "all-down"]


@fact
class BootstrapDecision(Fact):
    branch: Branch
    chosen: str | None
    reason: str
    ranking: list[Candidate] = []
    risks: list[str] = []
    position: str = ""  # uuid:seqno of the chosen node
    safe_to_bootstrap: bool = False
    others: list[str] = []  # the members to bring back after the bootstrap
    refused: str = ""  # why nothing was chosen: see Block.kind


@fact
class PrimaryCheck(Fact):
    """What check_no_primary found; `blocked` stays set when the operator overrode the check."""

    blocked: str = ""  # Block.kind, or empty
    summary: str = ""


# -- pure decisions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A reason not to bootstrap anything, in the words of a refusal."""

    kind: str  # healthy, primary-alive, partition-primary, split
    summary: str
    observed: str
    expected: str
    why: str
    next_steps: str
    risk: str

    def refusal(self) -> Refusal:
        return Refusal(self.observed, self.expected, self.why, self.next_steps, self.risk)


def components(view: GaleraView) -> list[list[str]]:
    """Group the answering nodes by the component each one says it is in.

    A node's `wsrep_incoming_addresses` lists the client addresses of its component's
    members; where that cannot be matched to members, nodes whose component size equals
    the number of answering nodes are taken as one group, and any other shape as each
    node alone (the cautious reading: it can only add refusals).
    """
    up = [n for n in view.nodes if n.state == "up"]
    by_address = {f"{n.address}:{n.port}": n.name for n in view.nodes}
    groups: list[set[str]] = []
    for node in up:
        seen = {by_address[a] for a in node.incoming if a in by_address}
        if node.incoming and node.name in seen and len(seen) == len(node.incoming):
            members = seen & {n.name for n in up}
        elif node.cluster_size == len(up) and all(n.cluster_size == len(up) for n in up):
            members = {n.name for n in up}
        else:
            members = {node.name}
        members.add(node.name)
        for group in groups:
            if group & members:
                group |= members
                break
        else:
            groups.append(members)
    order = [n.name for n in view.nodes]
    return [sorted(g, key=order.index) for g in groups]


def _names(nodes: list[NodeView]) -> str:
    return ", ".join(n.name for n in nodes)


def assess_primary(view: GaleraView, start_commands: dict[str, str] | None = None) -> Block | None:
    """Refuse while any node is Primary, and while two non-Primary groups could each be
    bootstrapped (both sides of a partition). `start_commands` (member -> the inventory's
    start command) lets the refusal say exactly how to restart the missing nodes."""
    primary = [n for n in view.nodes if n.is_primary]
    others_up = [n for n in view.nodes if n.state == "up" and not n.is_primary]
    missing = [n for n in view.nodes if n.state != "up"]
    if primary and not others_up:
        sizes = sorted({n.cluster_size for n in primary})
        if not missing:
            return Block(
                kind="healthy",
                summary=f"nothing to do: every node is in a Primary component ({_names(primary)}, size {sizes})",
                observed=f"{_names(primary)} report wsrep_cluster_status Primary, component size {sizes}",
                expected="no Primary component: the cluster lost quorum (every node non-Primary) or every node is down",
                why="the cluster is serving; bootstrapping a node of a healthy cluster splits it into two",
                next_steps="nothing to recover. If clients fail, look at them or at the load balancer, not at quorum",
                risk="a second Primary component: two clusters taking writes that never meet again",
            )
        return Block(
            kind="primary-alive",
            summary=f"a Primary component is alive ({_names(primary)}); {_names(missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not in it",
            observed=f"{_names(primary)} report Primary (size {sizes}); " + "; ".join(n.describe() for n in missing),
            expected="no Primary component (quorum lost everywhere)",
            why="the cluster still has quorum and serves; the missing nodes only need to be restarted, and they "
                "rejoin the Primary component by themselves (IST or SST). Bootstrapping would make a second cluster",
            next_steps=f"start the missing node(s) normally ({_start_hint(missing, start_commands)}); "
                       f"nothing needs a bootstrap. Override only if you know the Primary component is lost",
            risk="a second Primary component next to the live one: the data written on each side diverges",
        )
    if primary and others_up:
        return Block(
            kind="partition-primary",
            summary=f"a partition: {_names(primary)} {'is' if len(primary) == 1 else 'are'} Primary while "
                    f"{_names(others_up)} {'is' if len(others_up) == 1 else 'are'} non-Primary",
            observed="; ".join(n.describe() for n in primary + others_up),
            expected="no Primary component anywhere before bootstrapping",
            why=f"{_names(others_up)} cannot see the Primary component: a network partition (or a node stuck "
                f"joining). The Primary side keeps serving; bootstrapping the other side makes two clusters",
            next_steps=f"fix the network between the two sides; {_names(others_up)} rejoin the Primary component by "
                       f"themselves. If they stay out, restart them normally. Override only if the Primary side is "
                       f"about to be fenced",
            risk="two Primary components: clients on each side write data the other never sees (split brain)",
        )
    groups = components(view)
    if len(groups) > 1:
        sides = " | ".join("{" + ", ".join(g) + "}" for g in groups)
        return Block(
            kind="split",
            summary=f"both sides of a partition are non-Primary and each could be bootstrapped: {sides}",
            observed=f"running nodes in separate components: {sides}; "
                     + "; ".join(n.describe() for n in view.nodes if n.state == "up"),
            expected="one group of running non-Primary nodes that see each other",
            why="bootstrapping one side while the other side can still be bootstrapped (by a person, a script or "
                "another drengine run) makes two clusters with diverging data; drengine does not pick a side",
            next_steps="decide which side survives; stop mariadbd on the other side (or fence it) and rerun, or fix "
                       "the network so the groups merge. Override only if the other side is already fenced",
            risk="if the other side is bootstrapped too, two clusters take writes that can never be merged",
        )
    return None


def _start_hint(nodes: list[NodeView], commands: dict[str, str] | None) -> str:
    if not commands:
        return "with the service's start command on their hosts"
    return "; ".join(f"on {n.name}: `{commands[n.name]}`" for n in nodes if n.name in commands)


def _rank_key(order: list[str]) -> Callable[[Candidate], tuple[int, int, int]]:
    def key(c: Candidate) -> tuple[int, int, int]:
        # Highest seqno first; on a tie the node Galera marked safe, then the inventory order.
        return (-c.seqno, 0 if c.safe_to_bootstrap else 1, order.index(c.name))

    return key


def _describe_ranking(best: Candidate, rest: list[Candidate], what: str) -> str:
    reason = f"{best.name} is the most advanced: {what} {best.seqno} ({best.source})"
    if rest:
        reason += "; " + ", ".join(f"{c.name} {c.seqno} ({c.source})" for c in rest)
    ties = [c.name for c in rest if c.seqno == best.seqno]
    if ties:
        reason += (f". {', '.join(ties)} {'has' if len(ties) == 1 else 'have'} the same position: "
                   f"either is safe; {best.name} comes "
                   + ("first as the node Galera marked safe_to_bootstrap" if best.safe_to_bootstrap
                      else "first in the inventory"))
    return reason


def choose_bootstrap_node(
    view: GaleraView,
    disk: list[DiskPosition] | None = None,
    overridden: bool = False,
    gone: tuple[str, ...] = (),
    down_disk: list[DiskPosition] | None = None,
) -> BootstrapDecision:
    """Choose the node to bootstrap a new Primary component from, and say why.

    Some node answering (non-Primary): the running node with the highest
    wsrep_last_committed; `down_disk` are the positions the nodes that are down saved on
    disk, and one further on than the choice is named as a risk (it rejoins by taking the
    survivor's data). Every node down: the highest seqno from grastate.dat, or from
    `--wsrep-recover` where grastate.dat says -1 (given in `disk`; without it the
    decision says to read them). `overridden` means the operator broke the glass on a
    refusal: choose anyway and say what that risks.
    """
    order = [n.name for n in view.nodes]
    block = assess_primary(view)
    risks: list[str] = []
    if block is not None:
        if not overridden:
            return BootstrapDecision(branch="running", chosen=None, reason=block.summary, refused=block.kind)
        risks.append(f"the safety check was overridden: {block.summary}; {block.risk}")
    up = [n for n in view.nodes if n.state == "up" and not n.is_primary]
    silent = [n for n in view.nodes if n.state in ("hung", "unreachable")]
    primary = [n for n in view.nodes if n.is_primary]
    if primary and not up:
        # Overridden, yet every answering node is Primary already: bootstrapping one is never right.
        return BootstrapDecision(
            branch="running", chosen=None, refused=block.kind if block else "healthy",
            reason=f"nothing to bootstrap: {_names(primary)} {'is' if len(primary) == 1 else 'are'} already Primary; "
                   f"the nodes that are not back only need to be started",
        )
    if up:
        rows = [Candidate(name=n.name, uuid=n.state_uuid, seqno=n.last_committed, source="wsrep_last_committed")
                for n in up]
        ranked = sorted(rows, key=_rank_key(order))
        best, rest = ranked[0], ranked[1:]
        if rest:
            reason = _describe_ranking(best, rest, "wsrep_last_committed")
        else:
            reason = (f"{best.name} is the only node still running (wsrep_last_committed {best.seqno}); "
                      f"it keeps every write the lost Primary component committed while it was a member")
        down = [n for n in view.nodes if n.state == "down"]
        if down:
            reason += (f". {_names(down)} {'is' if len(down) == 1 else 'are'} down; "
                       f"{'it' if len(down) == 1 else 'they'} will be started afterwards and catch up from {best.name}")
        for n in silent:
            risks.append(f"{n.name} did not answer ({n.state}: {n.error}); its position is unknown. If it committed "
                         f"writes {best.name} lacks, they are lost when it rejoins (it takes {best.name}'s data)")
        risks += _history_risks(best, ranked)
        risks += _down_ahead_risks(best, down_disk or [], gone)
        return _decided("running", best, ranked, reason, risks, view, gone)
    if disk is None:
        return BootstrapDecision(
            branch="all-down", chosen=None,
            reason="no node answers: " + "; ".join(f"{n.name} {n.state}" for n in view.nodes)
                   + ". The positions saved on disk decide: grastate.dat, then --wsrep-recover where its seqno is -1",
        )
    known = [p for p in disk if p.known]
    rows = [Candidate(name=p.name, uuid=p.uuid, seqno=p.seqno, source=p.source, safe_to_bootstrap=p.safe_to_bootstrap)
            for p in known]
    for p in disk:
        if p.known or p.name in gone:
            continue
        why = "its mariadbd still runs but does not answer (hung?)" if p.running else (p.error or "no position")
        risks.append(f"{p.name}: position unknown ({why}). If it is more advanced, its extra writes are lost")
    if not rows:
        return BootstrapDecision(
            branch="all-down", chosen=None, risks=risks, refused="no-position",
            reason="no node's position could be read: " + "; ".join(
                f"{p.name}: {'still running (hung?)' if p.running else p.error or 'seqno -1'}" for p in disk),
        )
    ranked = sorted(rows, key=_rank_key(order))
    best, rest = ranked[0], ranked[1:]
    reason = _describe_ranking(best, rest, "seqno")
    risks += _history_risks(best, ranked)
    return _decided("all-down", best, ranked, reason, risks, view, gone)


def _down_ahead_risks(best: Candidate, down: list[DiskPosition], gone: tuple[str, ...]) -> list[str]:
    """Nodes that are down may have stayed in the Primary component longer than the running
    survivor (it left first, they committed more, then crashed): found by the explorer, a
    survivor behind a crashed node was bootstrapped and the crashed node's last writes were
    overwritten when it rejoined, without a word."""
    risks = []
    for p in down:
        if p.name in gone:
            continue
        if not p.known:
            why = "its mariadbd still runs but does not answer" if p.running else (p.error or "no position")
            risks.append(f"{p.name} is down and its saved position could not be read ({why}); if it committed "
                         f"writes {best.name} lacks, they are lost when it rejoins from {best.name}")
        elif p.uuid == best.uuid and p.seqno > best.seqno:
            risks.append(f"{p.name} is down but its data ends at seqno {p.seqno} ({p.source}), past {best.name}'s "
                         f"{best.seqno}: its last {p.seqno - best.seqno} write(s) are lost when it rejoins from "
                         f"{best.name}. To keep them, stop {best.name} and bootstrap {p.name} instead (every node down)")
    return risks


def _history_risks(best: Candidate, ranked: list[Candidate]) -> list[str]:
    other = [c for c in ranked if c.uuid and best.uuid and c.uuid != best.uuid]
    if not other:
        return []
    return [f"{', '.join(c.name for c in other)} hold(s) a different cluster history (state UUID "
            f"{other[0].uuid}, not {best.uuid}): positions from different histories cannot be compared, and "
            f"those nodes will be overwritten by a full SST"]


def _decided(branch: Branch, best: Candidate, ranked: list[Candidate], reason: str, risks: list[str],
             view: GaleraView, gone: tuple[str, ...]) -> BootstrapDecision:
    others = [n.name for n in view.nodes if n.name != best.name and n.name not in gone]
    return BootstrapDecision(
        branch=branch, chosen=best.name, reason=reason, ranking=ranked, risks=risks,
        position=f"{best.uuid}:{best.seqno}", safe_to_bootstrap=best.safe_to_bootstrap, others=others,
    )


# -- statements --------------------------------------------------------------------------------------

PC_BOOTSTRAP = Sql("SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
HEARTBEAT_ID = "galera-recovery"


def heartbeat_write(now: float) -> Sql:
    return Sql("REPLACE INTO drengine.heartbeat (id, written_at) VALUES (%s, %s)", (HEARTBEAT_ID, round(now, 3)))


HEARTBEAT_READ = Sql("SELECT written_at FROM drengine.heartbeat WHERE id = %s", (HEARTBEAT_ID,))


Ctx = RunContext[GaleraAPI]


def _send(ctx: Ctx, member: str, sql: Sql, timeout: float | None = None) -> None:
    ctx.backend.execute(member, sql, timeout)
    ctx.sent(sql.on(member))


def _shell(target: str, text: str) -> Statement:
    return Statement(target, text, language="shell")


def _gone(ctx: Ctx) -> tuple[str, ...]:
    return tuple(ctx.cluster.gone_for_good) + tuple(ctx.operator_said_gone)


def _evidence(view: GaleraView) -> list[str]:
    return [n.describe() for n in view.nodes]


class ServiceParams(StepParams):
    service_timeout: float = Field(default=300.0, gt=0, le=86400,
                                   description="seconds a start, bootstrap or recover command may take (SST can be slow)")


# -- actions -------------------------------------------------------------------------------------------


@register
class Observe(Action[GaleraAPI, NoParams]):
    name = "galera.observe"
    effect = Effect.READ
    description = "Probe every node in parallel (wsrep status: component, size, state, last committed)"

    def propose(self, ctx: Ctx) -> Proposal:
        stmts = [Statement(m.name, t) for m in ctx.cluster.members for t in (SYNC_WAIT_OFF, STATUS_SQL)]
        return Proposal(summary=f"probe {len(ctx.cluster.members)} nodes in parallel", statements=stmts)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.backend.observe()
        counts: dict[str, int] = {}
        for n in view.nodes:
            key = n.cluster_status if n.state == "up" else n.state
            counts[key] = counts.get(key, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in counts.items()) + f" (of {len(view.nodes)} nodes)"
        return StepResult(ok=True, summary=summary, facts={"view": view}, evidence=_evidence(view))


@register
class CheckNoPrimary(Action[GaleraAPI, NoParams]):
    name = "galera.check_no_primary"
    effect = Effect.CHECK
    description = "Refuse while any node is Primary, or while both sides of a partition could be bootstrapped"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="check that no Primary component is alive and that the running nodes form one group")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("view", GaleraView)
        api = ctx.backend
        starts = {n.name: command_text(api.service_command("start", n.name)) for n in view.nodes}
        block = assess_primary(view, starts)
        if block is None:
            return StepResult(ok=True, summary="no node is Primary and the running nodes form at most one group",
                              facts={"primary_check": PrimaryCheck()}, evidence=_evidence(view))
        # The fact records the block even when the operator overrides it: the choice step must know.
        return StepResult(ok=False, summary=block.summary, refusal=block.refusal(), evidence=_evidence(view),
                          facts={"primary_check": PrimaryCheck(blocked=block.kind, summary=block.summary)})


@register
class ChooseBootstrap(Action[GaleraAPI, NoParams]):
    name = "galera.choose_bootstrap"
    effect = Effect.READ
    outcomes = ("running", "all-down")
    description = "Choose the running node with the highest wsrep_last_committed, or branch to the disk positions"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="rank the running nodes by wsrep_last_committed (or note that every node is down)")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("view", GaleraView)
        check = ctx.facts.maybe("primary_check", PrimaryCheck)
        down_disk = self._down_positions(ctx, view)
        decision = choose_bootstrap_node(view, overridden=bool(check and check.blocked), gone=_gone(ctx),
                                         down_disk=down_disk)
        evidence = [f"{c.name}: {c.source} {c.seqno} (state {c.uuid})" for c in decision.ranking]
        evidence += [f"{p.name} (down): {p.uuid}:{p.seqno} from {p.source}" if p.known else
                     f"{p.name} (down): position unknown: {p.error or 'still running'}" for p in down_disk]
        evidence += [f"RISK: {r}" for r in decision.risks]
        if decision.branch == "all-down":
            return StepResult(ok=True, outcome="all-down", summary=decision.reason, facts={"decision": decision},
                              evidence=evidence)
        if decision.chosen is None:
            return StepResult(ok=False, summary=f"no node can be bootstrapped: {decision.reason}",
                              facts={"decision": decision}, evidence=evidence)
        return StepResult(ok=True, outcome="running", summary=_chose(decision), facts={"decision": decision},
                          evidence=evidence)

    def _down_positions(self, ctx: Ctx, view: GaleraView) -> list[DiskPosition]:
        """With a node still running (the running branch), what the nodes that are down saved on
        disk: one of them may be further on than every running node."""
        if not any(n.state == "up" and not n.is_primary for n in view.nodes):
            return []
        reader = ReadPositions(ServiceParams())
        down = [n.name for n in view.nodes if n.state == "down" and n.name not in _gone(ctx)]
        positions = []
        for name in down:
            position, sent = reader._read_one(ctx, name, reader.params.service_timeout)
            for statement, outcome in sent:
                ctx.sent(statement, result=outcome)
            positions.append(position)
        return positions


@register
class ReadPositions(Action[GaleraAPI, ServiceParams]):
    name = "galera.read_positions"
    effect = Effect.READ
    Params = ServiceParams
    description = "Every node is down: read grastate.dat on each host, --wsrep-recover where seqno is -1"

    def propose(self, ctx: Ctx) -> Proposal:
        api = ctx.backend
        stmts: list[Statement] = []
        for m in ctx.cluster.members:
            if m.name in _gone(ctx):
                continue
            stmts.append(_shell(m.name, command_text(api.service_command("status", m.name))))
            stmts.append(grastate_statement(m))
            stmts.append(_shell(m.name, command_text(api.service_command("recover", m.name)) + "   # only if seqno is -1"))
        return Proposal(
            summary="read each node's saved position on its host, in parallel",
            reason="--wsrep-recover starts mariadbd without joining the cluster or accepting clients, runs InnoDB "
                   "crash recovery and prints the last committed position; it refuses to run on a node whose "
                   "mariadbd still holds the data directory",
            statements=stmts,
        )

    def _read_one(self, ctx: Ctx, name: str, timeout: float) -> tuple[DiskPosition, list[tuple[Statement, str]]]:
        """One node's position, and the commands sent with their results (journaled by the
        caller in member order: the workers run in parallel)."""
        api = ctx.backend
        sent: list[tuple[Statement, str]] = []
        try:
            # Never --wsrep-recover under a live mariadbd (a hung one answers no probe but holds the datadir).
            running = api.node_running(name)
            sent.append((_shell(name, command_text(api.service_command("status", name))),
                         {True: "running", False: "not running", None: "unknown"}[running]))
            if running:
                return DiskPosition(name=name, running=True), sent
            state = api.read_grastate(name)
            sent.append((grastate_statement(ctx.cluster.member(name)),
                         f"uuid {state.uuid} seqno {state.seqno} safe_to_bootstrap {int(state.safe_to_bootstrap)}"))
            if state.seqno >= 0:
                return DiskPosition(name=name, uuid=state.uuid, seqno=state.seqno,
                                    safe_to_bootstrap=state.safe_to_bootstrap, source="grastate.dat"), sent
            recover = _shell(name, command_text(api.service_command("recover", name)))
            try:
                recovered = api.recover_position(name, timeout=timeout)
            except DrengineError as exc:
                sent.append((recover, f"error: {exc}"))
                raise
            sent.append((recover, f"Recovered position: {recovered.uuid}:{recovered.seqno}"))
            return DiskPosition(name=name, uuid=recovered.uuid, seqno=recovered.seqno,
                                safe_to_bootstrap=state.safe_to_bootstrap, source="--wsrep-recover"), sent
        except DrengineError as exc:
            return DiskPosition(name=name, error=str(exc)), sent

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("view", GaleraView)
        check = ctx.facts.maybe("primary_check", PrimaryCheck)
        timeout = self.params.service_timeout
        names = [m.name for m in ctx.cluster.members if m.name not in _gone(ctx)]
        # One host each: reading in parallel turns N recoveries into the time of the slowest.
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(names))), thread_name_prefix="galera-disk") as pool:
            results = list(pool.map(lambda n: self._read_one(ctx, n, timeout), names))
        positions = [position for position, _ in results]
        for _, sent in results:
            for statement, outcome in sent:
                ctx.sent(statement, result=outcome)
        decision = choose_bootstrap_node(view, disk=positions, overridden=bool(check and check.blocked), gone=_gone(ctx))
        evidence = []
        for p in positions:
            if p.known:
                evidence.append(f"{p.name}: {p.uuid}:{p.seqno} from {p.source}, safe_to_bootstrap {int(p.safe_to_bootstrap)}")
            else:
                evidence.append(f"{p.name}: UNKNOWN: {'mariadbd still running' if p.running else p.error}")
        evidence += [f"RISK: {r}" for r in decision.risks]
        facts: dict[str, BaseModel] = {"positions": DiskPositions(positions=positions), "decision": decision}
        if decision.chosen is None:
            return StepResult(ok=False, summary=f"no node can be bootstrapped: {decision.reason}", facts=facts,
                              evidence=evidence)
        return StepResult(ok=True, summary=_chose(decision), facts=facts, evidence=evidence)


def _chose(decision: BootstrapDecision) -> str:
    text = f"chose {decision.chosen}: {decision.reason}"
    if decision.risks:
        text += ". RISK: " + " RISK: ".join(decision.risks)
    return text


def _chosen(ctx: Ctx) -> tuple[BootstrapDecision, str]:
    decision = ctx.facts.get("decision", BootstrapDecision)
    if decision.chosen is None:
        raise StepFailed(f"no node was chosen to bootstrap: {decision.reason}")
    return decision, decision.chosen


def _bootstrap_gate(decision: BootstrapDecision) -> GateLevel:
    return GateLevel.DANGEROUS if decision.risks else GateLevel.CONFIRM


@register
class BootstrapRunning(Action[GaleraAPI, NoParams]):
    name = "galera.bootstrap_running"
    effect = Effect.MUTATE
    description = "Make the chosen running node a new Primary component (pc.bootstrap=YES)"

    def propose(self, ctx: Ctx) -> Proposal:
        decision, chosen = _chosen(ctx)
        return Proposal(
            summary=f"bootstrap a Primary component on {chosen} (running, at {decision.position})",
            reason=decision.reason, statements=[PC_BOOTSTRAP.on(chosen)],
            gate=_bootstrap_gate(decision), risks=decision.risks,
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        _, chosen = _chosen(ctx)
        return ctx.backend.probe(chosen).is_primary

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        _, chosen = _chosen(ctx)
        api = ctx.backend
        node = api.probe(chosen)
        if node.state != "up":
            raise StepFailed(f"{chosen} no longer answers ({node.state}: {node.error}); nothing was sent. Observe again "
                             f"(rerun the runbook): if it went down, every node may now be down")
        if not node.is_primary:
            _send(ctx, chosen, PC_BOOTSTRAP)
        last: list[NodeView] = [node]

        def primary() -> bool:
            last[0] = api.probe(chosen)
            return last[0].is_primary

        if not ctx.wait_until(primary, ctx.cluster.timeouts.read, interval=0.02):
            raise StepFailed(f"{chosen} is still not Primary {ctx.cluster.timeouts.read:g} s after pc.bootstrap=YES: "
                             f"{last[0].describe()}. Look at its error log; then resume the run")
        return StepResult(ok=True, summary=f"{chosen} is Primary (component size {last[0].cluster_size})",
                          evidence=[last[0].describe()])


@register
class BootstrapStart(Action[GaleraAPI, ServiceParams]):
    name = "galera.bootstrap_start"
    effect = Effect.MUTATE
    Params = ServiceParams
    description = "Start the chosen stopped node as a new cluster (bootstrap service command)"

    def propose(self, ctx: Ctx) -> Proposal:
        decision, chosen = _chosen(ctx)
        api = ctx.backend
        member = ctx.cluster.member(chosen)
        stmts = []
        reason = decision.reason
        if not decision.safe_to_bootstrap:
            stmts.append(_shell(chosen, command_text(safe_to_bootstrap_command(member))))
            reason += (". Its grastate.dat says safe_to_bootstrap: 0 (Galera sets 1 only on the last node to leave "
                       "cleanly); after a crash an operator sets it on the node chosen, or the start refuses")
        stmts.append(_shell(chosen, command_text(api.service_command("bootstrap", chosen))))
        return Proposal(
            summary=f"bootstrap-start {chosen} as a new cluster from its position {decision.position}",
            reason=reason, statements=stmts, gate=_bootstrap_gate(decision), risks=decision.risks,
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        _, chosen = _chosen(ctx)
        return ctx.backend.probe(chosen).is_primary

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision, chosen = _chosen(ctx)
        api = ctx.backend
        timeout = self.params.service_timeout
        node = api.probe(chosen)
        if node.is_primary:
            return StepResult(ok=True, summary=f"{chosen} is already Primary (component size {node.cluster_size})",
                              evidence=[node.describe()])
        if node.state != "down":
            raise StepFailed(f"{chosen} is not down any more ({node.describe()}); nothing was started. Someone or "
                             f"something started it: observe again (rerun the runbook)")
        member = ctx.cluster.member(chosen)
        if not api.read_grastate(chosen).safe_to_bootstrap:
            result = api.mark_safe_to_bootstrap(chosen)
            ctx.sent(_shell(chosen, command_text(safe_to_bootstrap_command(member))), result=f"exit {result.exit_status}")
            result.check()
            if not api.read_grastate(chosen).safe_to_bootstrap:
                raise StepFailed(f"{chosen}: grastate.dat still says safe_to_bootstrap: 0 after the edit; check the "
                                 f"file on its host, then resume")
        bootstrap = api.service_command("bootstrap", chosen)
        result = api.run_service("bootstrap", chosen, timeout=timeout)
        ctx.sent(_shell(chosen, command_text(bootstrap)), result=f"exit {result.exit_status}")
        result.check()
        last: list[NodeView] = [node]

        def primary() -> bool:
            last[0] = api.probe(chosen)
            return last[0].is_primary

        if not ctx.wait_until(primary, ctx.cluster.timeouts.catch_up, interval=0.1):
            raise StepFailed(f"{chosen} was started but is not Primary after {ctx.cluster.timeouts.catch_up:g} s: "
                             f"{last[0].describe()}. Look at its error log; then resume the run")
        out = (result.stdout.strip().splitlines() or [""])[-1]
        evidence = [last[0].describe()] + ([f"bootstrap command said: {out}"] if out else [])
        return StepResult(ok=True, summary=f"{chosen} started as a new cluster and is Primary at "
                                           f"{last[0].state_uuid}:{last[0].last_committed}", evidence=evidence)


@register
class StartOthers(Action[GaleraAPI, ServiceParams]):
    name = "galera.start_others"
    effect = Effect.MUTATE
    Params = ServiceParams
    description = "Start the other nodes normally: they rejoin the new Primary component (IST where possible)"

    def _plan(self, ctx: Ctx) -> tuple[list[str], list[str], list[str]]:
        """(to start, already back, left alone with a reason)."""
        decision, chosen = _chosen(ctx)
        # A plan never got past the bootstrap: what it observed first is all there is.
        view = ctx.facts.get("view", GaleraView) if ctx.mode is Mode.PLAN else ctx.backend.observe()
        start, back, alone = [], [], []
        for name in decision.others:
            n = view.node(name)
            if n.state == "down":
                start.append(name)
            elif n.is_primary:
                back.append(name)
            elif n.state == "up":
                alone.append(f"{name} runs outside the Primary component ({n.describe()}); it rejoins by itself once "
                             f"it sees {chosen}, or restart it")
            else:
                alone.append(f"{name} is {n.state} ({n.error}); not started (its process may still run: stop it first, "
                             f"then start it with `{command_text(ctx.backend.service_command('start', name))}`)")
        return start, back, alone

    def propose(self, ctx: Ctx) -> Proposal:
        decision, chosen = _chosen(ctx)
        start, back, alone = self._plan(ctx)
        api = ctx.backend
        stmts = [_shell(n, command_text(api.service_command("start", n))) for n in start]
        reason = (f"a node started normally joins {chosen}'s Primary component; one that crashed first recovers its "
                  f"position (--wsrep-recover) so that it asks for the missing writesets only (IST) instead of a full "
                  f"copy (SST). One at a time: a donor serves one state transfer at a time")
        if alone:
            reason += ". Left alone: " + "; ".join(alone)
        return Proposal(summary=f"start {', '.join(start) or 'no node'}", reason=reason, statements=stmts,
                        nothing_to_do=not start and not alone)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        start, _, _ = self._plan(ctx)
        return not start

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        api = ctx.backend
        timeout = self.params.service_timeout
        start, back, alone = self._plan(ctx)
        started, evidence, failures = [], [], []
        for name in start:
            command = api.service_command("start", name)
            try:
                result = api.run_service("start", name, timeout=timeout)
            except (ConnectError, CommandFailed) as exc:
                ctx.sent(_shell(name, command_text(command)), result=f"error: {exc}")
                failures.append(str(exc))
                continue
            ctx.sent(_shell(name, command_text(command)), result=f"exit {result.exit_status}")
            try:
                result.check()
            except CommandFailed as exc:
                failures.append(str(exc))
                continue
            started.append(name)
            out = (result.stdout.strip().splitlines() or [""])[-1]
            if out:
                evidence.append(f"{name}: {out}")
        summary = f"started {', '.join(started) or 'none'}"
        if back:
            summary += f"; already back: {', '.join(back)}"
        if alone:
            summary += "; left alone: " + "; ".join(alone)
        if failures:
            return StepResult(ok=False, summary=summary + "; FAILED: " + "; ".join(failures) +
                              ". The Primary component keeps serving; start the failed node(s) by hand, then resume",
                              evidence=evidence)
        return StepResult(ok=True, summary=summary, evidence=evidence)


class VerifyParams(StepParams):
    scope: Literal["bootstrapped", "cluster"] = Field(
        default="cluster", description="bootstrapped: the chosen node alone; cluster: every reachable node")


@register
class Verify(Action[GaleraAPI, VerifyParams]):
    name = "galera.verify"
    effect = Effect.MUTATE
    # It only writes drengine's own heartbeat/canary and reads it back: running it again is harmless.
    repeatable = True
    Params = VerifyParams
    # It only writes a row into drengine's own heartbeat table, so it needs no confirmation.
    min_gate = GateLevel.NONE
    description = "Primary everywhere reachable, size as expected, Synced, and a write that works"

    def propose(self, ctx: Ctx) -> Proposal:
        _, chosen = _chosen(ctx)
        scope = self.params.scope
        stmts = [s.on(chosen) for s in [*HEARTBEAT_DDL, heartbeat_write(time.time())]]
        if scope == "cluster":
            stmts.append(Statement("every other node", HEARTBEAT_READ.shown()))
        what = chosen if scope == "bootstrapped" else "every reachable node"
        return Proposal(summary=f"verify {what}: Primary, Synced, and a write in drengine.heartbeat", statements=stmts)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return False  # harmless to repeat: it only rewrites the heartbeat row

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        _, chosen = _chosen(ctx)
        api = ctx.backend
        scope = self.params.scope
        head = api.probe(chosen)
        if not (head.is_primary and head.local_state == "Synced"):
            return StepResult(ok=False, summary=f"{chosen} is not a Synced member of a Primary component: {head.describe()}",
                              evidence=[head.describe()])
        now = time.time()
        for sql in [*HEARTBEAT_DDL, heartbeat_write(now)]:
            _send(ctx, chosen, sql)
        if scope == "bootstrapped":
            return StepResult(ok=True, summary=f"{chosen} is Primary and Synced; a write in drengine.heartbeat worked",
                              evidence=[head.describe()])
        return self._verify_cluster(ctx, chosen, round(now, 3))

    def _verify_cluster(self, ctx: Ctx, chosen: str, written: float) -> StepResult:
        api = ctx.backend
        view = api.observe()
        up = [n for n in view.nodes if n.state == "up"]
        silent = [n for n in view.nodes if n.state != "up"]
        head = view.node(chosen)
        problems = []
        for n in up:
            if not n.is_primary:
                problems.append(f"{n.name} is {n.cluster_status}, expected Primary")
            elif n.state_uuid != head.state_uuid:
                problems.append(f"{n.name} is in another cluster history ({n.state_uuid}, expected {head.state_uuid})")
            elif n.cluster_size != len(up):
                problems.append(f"{n.name} sees a component of size {n.cluster_size}, expected {len(up)} "
                                f"(the nodes that answer)")
            elif n.local_state != "Synced":
                problems.append(f"{n.name} is {n.local_state}, expected Synced")
        for n in up:
            if n.name == chosen or not n.is_primary:
                continue
            def has_row(node: str = n.name) -> bool:
                rows = api.query(node, HEARTBEAT_READ)
                return bool(rows) and abs(float(rows[0][0]) - written) < 0.01

            if not ctx.wait_until(has_row, ctx.cluster.timeouts.catch_up, interval=0.05):
                problems.append(f"{n.name} does not show the heartbeat written on {chosen}")
        evidence = _evidence(view)
        if problems:
            return StepResult(ok=False, summary="the cluster is not whole yet: " + "; ".join(problems), evidence=evidence)
        summary = (f"{len(up)} node(s) Primary and Synced in one component of size {len(up)} ({_names(up)}); "
                   f"the write on {chosen} is visible on every one")
        if silent:
            summary += (f". Not back: {'; '.join(f'{n.name} ({n.state})' for n in silent)}: the cluster serves with "
                        f"{len(up)} of {len(view.nodes)} nodes; bring them back and they rejoin by themselves")
        return StepResult(ok=True, summary=summary, evidence=evidence)
