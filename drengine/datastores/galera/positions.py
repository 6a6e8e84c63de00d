"""Galera steps that find where each node's data ends and choose the node to bootstrap:
read-positions (on each host of a node that does not answer: is mariadbd running, what
grastate.dat says; nothing is started), recover-positions (`--wsrep-recover`, which starts
mariadbd in recovery mode: a mutating step behind a gate, which a plan shows and never runs),
and choose-bootstrap (the pure decision in galera/decisions.py)."""

from __future__ import annotations

from drengine.datastores.galera.actions import Ctx, ServiceParams, _chose, _gone, _grastate_line, _shell
from drengine.datastores.galera.connector import GaleraAPI, GaleraView, grastate_statement
from drengine.datastores.galera.decisions import DiskPosition, DiskPositions, PrimaryCheck, choose_bootstrap_node
from drengine.errors import DrengineError
from drengine.steps import Action, Effect, NoParams, Proposal, Statement, StepResult, register
from drengine.transport import command_text


@register
class ChooseBootstrap(Action[GaleraAPI, NoParams]):
    name = "galera.choose_bootstrap"
    effect = Effect.READ
    outcomes = ("running", "all-down")
    inputs = ("bootstrap",)
    description = ("Choose the node of the cluster's history with the highest position (running: "
                   "wsrep_last_committed; every node down: the positions saved on disk), or the node the operator named")

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="rank the nodes of the cluster's history by position (running nodes first)")

    def assumed_result(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        """A plan does not run --wsrep-recover: it decides on what grastate.dat said, a node still to
        recover counted at seqno 0, and says that the choice waits for the recovered positions."""
        pending = [p.name for p in _to_recover(ctx)]
        result = self._decide(ctx, {name: 0 for name in pending})
        if pending:
            result.summary = (f"(plan) once --wsrep-recover has read {', '.join(pending)}, the most advanced node of "
                              f"the cluster's history is chosen; on what is known now: {result.summary}")
        return result

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        return self._decide(ctx, {})

    def _decide(self, ctx: Ctx, assume: dict[str, int]) -> StepResult:
        view = ctx.facts.get("view", GaleraView)
        check = ctx.facts.maybe("primary_check", PrimaryCheck)
        saved = ctx.facts.maybe("positions", DiskPositions)
        disk = [p.model_copy(update={"seqno": assume[p.name], "source": "not recovered yet: plan"}) if p.name in assume else p
                for p in (saved.positions if saved is not None else [])]
        decision = choose_bootstrap_node(view, disk=disk, overridden=bool(check and check.blocked), gone=_gone(ctx),
                                         named=ctx.inputs.get("bootstrap"))
        evidence = [f"{c.name}: {c.source} {c.seqno} (state {c.uuid})" for c in decision.ranking]
        evidence += [f"{p.name} (not answering): {p.uuid}:{p.seqno} from {p.source}" if p.known else
                     f"{p.name} (not answering): position unknown: "
                     f"{p.error or ('still running' if p.running else 'seqno -1')}" for p in disk]
        evidence += [f"RISK: {r}" for r in decision.risks]
        if decision.chosen is None:
            return StepResult(ok=False, summary=f"no node can be bootstrapped: {decision.reason}",
                              facts={"decision": decision}, evidence=evidence)
        return StepResult(ok=True, outcome=decision.branch, summary=_chose(decision), facts={"decision": decision},
                          evidence=evidence)


def _silent(ctx: Ctx) -> list[str]:
    """The nodes that do not answer (down, hung, unreachable), but for those gone for good."""
    view = ctx.facts.get("view", GaleraView)
    return [n.name for n in view.nodes if n.state != "up" and n.name not in _gone(ctx)]


@register
class ReadPositions(Action[GaleraAPI, NoParams]):
    name = "galera.read_positions"
    effect = Effect.READ
    description = "Read on each host of a node that does not answer whether mariadbd runs, and its grastate.dat"

    def propose(self, ctx: Ctx) -> Proposal:
        api = ctx.backend
        stmts: list[Statement] = []
        for name in _silent(ctx):
            stmts.append(_shell(name, command_text(api.service_command("status", name))))
            stmts.append(grastate_statement(ctx.cluster.member(name)))
        return Proposal(summary=f"read the saved position of {', '.join(_silent(ctx)) or 'no node'} on its host",
                        reason="a node that is down may be further on than every running one; nothing is started",
                        statements=stmts, nothing_to_do=not stmts)

    def _read_one(self, ctx: Ctx, name: str) -> tuple[DiskPosition, list[tuple[Statement, str]]]:
        """One node's position, and the commands sent with their results (journaled by the
        caller in member order: the hosts are read in parallel)."""
        api = ctx.backend
        sent: list[tuple[Statement, str]] = []
        try:
            running = api.node_running(name)
            sent.append((_shell(name, command_text(api.service_command("status", name))),
                         {True: "running", False: "not running", None: "unknown"}[running]))
            if running is not False:
                # A hung mariadbd still holds the data directory: what it saved is not its position.
                return DiskPosition(name=name, running=bool(running),
                                    error="" if running else "the host cannot say whether mariadbd runs"), sent
            state = api.read_grastate(name)
            sent.append((grastate_statement(ctx.cluster.member(name)), _grastate_line(state)))
            source = "grastate.dat" if state.seqno >= 0 else ""
            return DiskPosition(name=name, uuid=state.uuid, seqno=state.seqno, source=source,
                                safe_to_bootstrap=state.safe_to_bootstrap), sent
        except DrengineError as exc:
            return DiskPosition(name=name, error=str(exc)), sent

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        results = ctx.backend.on_every_host(_silent(ctx), lambda n: self._read_one(ctx, n))
        positions = [position for position, _ in results]
        for _, sent in results:
            for statement, outcome in sent:
                ctx.sent(statement, result=outcome)
        return StepResult(ok=True, summary="; ".join(_position_line(p) for p in positions) or "every node answers",
                          facts={"positions": DiskPositions(positions=positions)},
                          evidence=[_position_line(p) for p in positions])


def _position_line(p: DiskPosition) -> str:
    if p.known:
        return f"{p.name}: {p.uuid}:{p.seqno} from {p.source}, safe_to_bootstrap {int(p.safe_to_bootstrap)}"
    if p.running:
        return f"{p.name}: UNKNOWN: mariadbd still runs (hung?)"
    if p.error:
        return f"{p.name}: UNKNOWN: {p.error}"
    return f"{p.name}: grastate.dat says seqno -1 (crashed): --wsrep-recover finds its position"


def _to_recover(ctx: Ctx) -> list[DiskPosition]:
    saved = ctx.facts.maybe("positions", DiskPositions)
    return [p for p in saved.positions if p.seqno < 0 and not p.running and not p.error] if saved else []


@register
class RecoverPositions(Action[GaleraAPI, ServiceParams]):
    name = "galera.recover_positions"
    effect = Effect.MUTATE
    # --wsrep-recover on a stopped node only prints where its data ends: running it again is harmless.
    repeatable = True
    Params = ServiceParams
    description = "Run --wsrep-recover on each stopped node whose grastate.dat says seqno -1 (starts mariadbd in recovery mode)"

    def propose(self, ctx: Ctx) -> Proposal:
        api = ctx.backend
        names = [p.name for p in _to_recover(ctx)]
        stmts = [_shell(n, command_text(api.service_command("recover", n))) for n in names]
        return Proposal(
            summary=f"recover the position of {', '.join(names) or 'no node'} with --wsrep-recover, in parallel",
            reason="a node that crashed saved no seqno in grastate.dat; --wsrep-recover starts mariadbd on its host "
                   "without joining the cluster or accepting clients, runs InnoDB crash recovery and prints the last "
                   "committed position. It refuses to run while a mariadbd holds the data directory",
            statements=stmts, nothing_to_do=not stmts)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return False  # it only reads a position: run it again

    def _recover(self, ctx: Ctx, p: DiskPosition) -> tuple[DiskPosition, tuple[Statement, str]]:
        api = ctx.backend
        shown = _shell(p.name, command_text(api.service_command("recover", p.name)))
        try:
            got = api.recover_position(p.name, timeout=self.params.service_timeout)
        except DrengineError as exc:
            return p.model_copy(update={"error": str(exc)}), (shown, f"error: {exc}")
        return (p.model_copy(update={"uuid": got.uuid, "seqno": got.seqno, "source": "--wsrep-recover"}),
                (shown, f"Recovered position: {got.uuid}:{got.seqno}"))

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        saved = ctx.facts.get("positions", DiskPositions)
        todo = {p.name: p for p in _to_recover(ctx)}
        results = ctx.backend.on_every_host(list(todo), lambda name: self._recover(ctx, todo[name]))
        recovered = {p.name: p for p, _ in results}
        for _, (statement, outcome) in results:
            ctx.sent(statement, result=outcome)
        positions = [recovered.get(p.name, p) for p in saved.positions]
        return StepResult(ok=True, summary="; ".join(_position_line(p) for p in recovered.values()),
                          facts={"positions": DiskPositions(positions=positions)},
                          evidence=[_position_line(p) for p in positions])
