"""MariaDB Galera: the steps of the `galera-bootstrap-survivor` runbook (observe, refuse,
choose, read positions, bootstrap, verify, start the others). The decisions they act on are
pure functions in galera/decisions.py; fencing and traffic steps in galera/traffic.py.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from drengine.datastores.galera.connector import (
    STATUS_SQL,
    SYNC_WAIT_OFF,
    GaleraAPI,
    GaleraView,
    NodeView,
    grastate_statement,
    safe_to_bootstrap_command,
)
from drengine.datastores.galera.decisions import (
    BootstrapDecision,
    Candidate,
    DiskPosition,
    DiskPositions,
    PrimaryCheck,
    assess_primary,
    choose_bootstrap_node,
    components,
    names_of,
)
from drengine.datastores.galera.ledger import kept_out
from drengine.datastores.galera.state import Grastate
from drengine.datastores.mariadb.connector import HEARTBEAT_DDL, Sql
from drengine.datastores.mysql_fencing import Fencing
from drengine.datastores.mysql_pool import StatementFailed
from drengine.datastores.mysql_steps import Target, split_brain_risks
from drengine.errors import CommandFailed, ConnectError, StepFailed
from drengine.steps import (
    Action,
    Effect,
    GateLevel,
    Mode,
    NoParams,
    Proposal,
    RunContext,
    Statement,
    StepParams,
    StepResult,
    register,
)

__all__ = ["BootstrapDecision", "Candidate", "DiskPosition", "DiskPositions", "PrimaryCheck", "assess_primary",
           "choose_bootstrap_node", "components"]
from drengine.transport import command_text

# -- statements --------------------------------------------------------------------------------------

PC_BOOTSTRAP = Sql("SET GLOBAL wsrep_provider_options='pc.bootstrap=YES'")
ER_WRONG_ARGUMENTS = 1210  # what a node answers to pc.bootstrap while its group view is changing
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


def _grastate_line(state: Grastate) -> str:
    return f"uuid {state.uuid} seqno {state.seqno} safe_to_bootstrap {int(state.safe_to_bootstrap)}"


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


def _bootstrap_risks(ctx: Ctx, decision: BootstrapDecision) -> list[str]:
    """The decision's risks, and a split brain for every other node neither confirmed dead nor fenced."""
    view = ctx.facts.get("view", GaleraView)
    silent: list[Target] = [(n.name, n.state, n.error) for n in view.nodes
                            if n.name != decision.chosen and n.state in ("hung", "unreachable")]
    return decision.risks + split_brain_risks(ctx.facts.maybe("fencing", Fencing), silent)


def _fenced_further_on(ctx: Ctx, decision: BootstrapDecision) -> None:
    """Just before the bootstrap, every node that did not answer is looked at again on its host:
    a hung one was fenced (stopped) since, and its grastate.dat now says which history its data
    belongs to and where it ends. Stop before sending anything (unless the operator named the
    node) when one still runs without answering (its position is unknown), when one is further
    on in the chosen node's history, or when that history is no longer the one most nodes hold."""
    chosen = next((c for c in decision.ranking if c.name == decision.chosen), None)
    if chosen is None or decision.named:
        return
    api = ctx.backend
    view = ctx.facts.get("view", GaleraView)
    saved = ctx.facts.maybe("positions", DiskPositions)
    known = {p.name: p for p in saved.positions if p.known} if saved else {}
    held = dict(decision.held)
    for name in [n.name for n in view.nodes if n.state != "up" and n.name != chosen.name and n.name not in _gone(ctx)]:
        if api.node_running(name) is not False:
            raise StepFailed(f"{name} did not answer and its mariadbd still runs (hung, or not fenced): its position is "
                             f"unknown, and may be past {chosen.name}'s. Nothing was sent. Fence it (approve the fence "
                             f"step), declare it gone for good (--gone {name}), or name the node with --input "
                             f"bootstrap={chosen.name}")
        state = api.read_grastate(name)
        ctx.sent(grastate_statement(ctx.cluster.member(name)), result=_grastate_line(state))
        seqno = state.seqno if state.seqno >= 0 else known[name].seqno if name in known else -1
        if seqno < 0:
            raise StepFailed(f"{name} did not answer and its grastate.dat says seqno -1 (it was killed, not stopped "
                             f"cleanly): its position is unknown, and may be past {chosen.name}'s. Nothing was sent. "
                             f"Rerun the runbook (recover-positions reads it with --wsrep-recover), or name the node "
                             f"with --input bootstrap={chosen.name}")
        if state.uuid:
            held[name] = state.uuid
        if state.uuid == chosen.uuid and seqno > chosen.seqno:
            raise StepFailed(
                f"{name} did not answer; its data now ends at seqno {seqno}, past {chosen.name}'s {chosen.seqno}: "
                f"bootstrapping {chosen.name} would lose its last {seqno - chosen.seqno} write(s). Nothing was sent. "
                f"Rerun the runbook (with the running node(s) stopped, {name} is chosen), or name the node with "
                f"--input bootstrap={chosen.name}")
    mine = sum(1 for uuid in held.values() if uuid == chosen.uuid)
    most = max((sum(1 for u in held.values() if u == other) for other in set(held.values()) - {chosen.uuid}), default=0)
    if mine <= most:
        raise StepFailed(
            f"with every node read, {chosen.name}'s history {chosen.uuid} is held by {mine} node(s) and another "
            f"by {most}: it is not the cluster's. Nothing was sent. Rerun the runbook, or name the node to bootstrap "
            f"with --input bootstrap=NODE")


def _bootstrap_gate(risks: list[str]) -> GateLevel:
    return GateLevel.DANGEROUS if risks else GateLevel.CONFIRM


def _fencing_words(ctx: Ctx) -> str:
    fencing = ctx.facts.maybe("fencing", Fencing)
    return f". Fencing: {fencing.summary()}" if fencing is not None and fencing.members else ""


def _fencing_evidence(ctx: Ctx) -> list[str]:
    fencing = ctx.facts.maybe("fencing", Fencing)
    return fencing.lines() if fencing is not None else []


@register
class BootstrapRunning(Action[GaleraAPI, NoParams]):
    name = "galera.bootstrap_running"
    effect = Effect.MUTATE
    description = "Make the chosen running node a new Primary component (pc.bootstrap=YES)"

    def propose(self, ctx: Ctx) -> Proposal:
        decision, chosen = _chosen(ctx)
        risks = _bootstrap_risks(ctx, decision)
        return Proposal(
            summary=f"bootstrap a Primary component on {chosen} (running, at {decision.position})",
            reason=decision.reason + _fencing_words(ctx), statements=[PC_BOOTSTRAP.on(chosen)],
            gate=_bootstrap_gate(risks), risks=risks, evidence=_fencing_evidence(ctx),
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
            _fenced_further_on(ctx, ctx.facts.get("decision", BootstrapDecision))
            self._bootstrap(ctx, chosen)
        last: list[NodeView] = [node]

        def primary() -> bool:
            last[0] = api.probe(chosen)
            return last[0].is_primary

        if not ctx.wait_until(primary, ctx.cluster.timeouts.read, interval=0.02):
            raise StepFailed(f"{chosen} is still not Primary {ctx.cluster.timeouts.read:g} s after pc.bootstrap=YES: "
                             f"{last[0].describe()}. Look at its error log; then resume the run")
        return StepResult(ok=True, summary=f"{chosen} is Primary (component size {last[0].cluster_size})",
                          evidence=[last[0].describe()])


    def _bootstrap(self, ctx: Ctx, chosen: str) -> None:
        """Send pc.bootstrap=YES. While its group membership is changing (nodes just fenced leave
        it, or woken ones knock) Galera refuses it with error 1210; it is sent again once the
        view has settled, within the cluster's catch-up time."""
        refused: list[str] = []

        def sent() -> bool:
            if refused and ctx.backend.probe(chosen).is_primary:
                return True
            try:
                _send(ctx, chosen, PC_BOOTSTRAP)
                return True
            except StatementFailed as exc:
                if exc.errno != ER_WRONG_ARGUMENTS:
                    raise
                refused.append(str(exc))
                ctx.sent(PC_BOOTSTRAP.on(chosen), result="refused while the group view changes (error 1210); again")
                return False

        if not ctx.wait_until(sent, ctx.cluster.timeouts.catch_up, interval=0.2):
            raise StepFailed(f"{chosen} kept refusing pc.bootstrap=YES for {ctx.cluster.timeouts.catch_up:g} s "
                             f"({refused[-1]}); look at its error log (a group view that does not settle), then resume")


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
        risks = _bootstrap_risks(ctx, decision)
        return Proposal(
            summary=f"bootstrap-start {chosen} as a new cluster from its position {decision.position}",
            reason=reason + _fencing_words(ctx), statements=stmts, gate=_bootstrap_gate(risks), risks=risks, evidence=_fencing_evidence(ctx),
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
        _fenced_further_on(ctx, decision)
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

    def _kept_out(self, ctx: Ctx) -> list[tuple[str, str]]:
        """The nodes left alone, each with why (the ledger's `galera.kept_out`)."""
        decision, _ = _chosen(ctx)
        view = ctx.backend.observe()
        return [(n, view.node(n).describe()) for n in decision.others
                if view.node(n).state != "down" and not view.node(n).is_primary]

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
        for name, why in self._kept_out(ctx):
            ctx.changed(kept_out(name, why, command_text(api.service_command("start", name))))
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
        stmts = [s.on(chosen) for s in [*HEARTBEAT_DDL, heartbeat_write(ctx.clock.wall())]]
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
        now = ctx.clock.wall()
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
                return bool(rows) and abs(float(str(rows[0][0])) - written) < 0.01

            if not ctx.wait_until(has_row, ctx.cluster.timeouts.catch_up, interval=0.05):
                problems.append(f"{n.name} does not show the heartbeat written on {chosen}")
        evidence = _evidence(view)
        if problems:
            return StepResult(ok=False, summary="the cluster is not whole yet: " + "; ".join(problems), evidence=evidence)
        summary = (f"{len(up)} node(s) Primary and Synced in one component of size {len(up)} ({names_of(up)}); "
                   f"the write on {chosen} is visible on every one")
        if silent:
            summary += (f". Not back: {'; '.join(f'{n.name} ({n.state})' for n in silent)}: the cluster serves with "
                        f"{len(up)} of {len(view.nodes)} nodes; bring them back and they rejoin by themselves")
        return StepResult(ok=True, summary=summary, evidence=evidence)


# The positions, fencing and traffic steps live beside these (importing them registers them).
from drengine.datastores.galera import positions as _positions  # noqa: E402,F401
from drengine.datastores.galera import traffic as _traffic  # noqa: E402,F401
