"""MariaDB (asynchronous GTID replication): the steps the MariaDB runbooks name (observe,
refuse, choose, promote, repoint, verify, rejoin). The decisions they act on are pure
functions in mariadb/decisions.py; fencing and traffic steps in mariadb/traffic.py."""

from __future__ import annotations

from pydantic import Field

from drengine import gtid
from drengine.datastores.mariadb.connector import HEARTBEAT_DDL, ClusterView, MariaDBAPI, ServerView, Sql
from drengine.datastores.mariadb.decisions import (
    Candidate,
    NewPrimary,
    RejoinDecision,
    Stray,
    SurvivorDecision,
    choose_survivor,
    plan_rejoin,
    writable_primaries,
)
from drengine.datastores.mysql_fencing import Fencing
from drengine.datastores.mysql_steps import split_brain_risks
from drengine.errors import StepFailed
from drengine.steps import (
    Action,
    Effect,
    GateLevel,
    NoParams,
    Proposal,
    Refusal,
    RunContext,
    Statement,
    StepParams,
    StepResult,
    register,
)

__all__ = ["Candidate", "NewPrimary", "RejoinDecision", "Stray", "SurvivorDecision", "choose_survivor", "plan_rejoin",
           "writable_primaries"]

# -- statements --------------------------------------------------------------------------------------

def change_master(host: str, port: int, user: str, password: str, demote: bool = False) -> Sql:
    demote_clause = ", MASTER_DEMOTE_TO_SLAVE=1" if demote else ""
    return Sql(
        "CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%s, MASTER_USER=%s, MASTER_PASSWORD=%s, "
        "MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1" + demote_clause,
        (host, port, user, password),
        secret=frozenset({3}),
    )


STOP_SLAVE = Sql("STOP SLAVE")
START_SLAVE = Sql("START SLAVE")
START_SQL_THREAD = Sql("START SLAVE SQL_THREAD")
RESET_SLAVE_ALL = Sql("RESET SLAVE ALL")
READ_WRITE = Sql("SET GLOBAL read_only=0")
READ_ONLY = Sql("SET GLOBAL read_only=1")


def gtid_wait(pos: str, timeout: float) -> Sql:
    return Sql("SELECT MASTER_GTID_WAIT(%s, %s)", (pos, timeout))


Ctx = RunContext[MariaDBAPI]


def _send(ctx: Ctx, member: str, sql: Sql, timeout: float | None = None) -> None:
    ctx.backend.execute(member, sql, timeout)
    ctx.sent(sql.on(member))


def _view_lines(view: ClusterView) -> list[str]:
    lines = []
    for s in view.servers:
        if not s.reachable:
            said = {"down": "DOWN", "hung": "HUNG"}.get(s.state, "UNREACHABLE")  # as the probe told it
            lines.append(f"{s.name} {s.address}:{s.port}: {said} ({s.error})")
            continue
        role = "writable, no replication" if s.is_writable_primary else ("replica" if s.channels else "read-only, no replication")
        line = (f"{s.name} {s.address}:{s.port}: {role}; read_only={int(s.read_only)} binlog={s.gtid_binlog_pos or '-'} "
                f"slave_pos={s.gtid_slave_pos or '-'}")
        for ch in s.channels:
            line += (f"; source {ch.master_host}:{ch.master_port} IO={ch.io_running} SQL={ch.sql_running} "
                     f"received={ch.gtid_io_pos or '-'} gtid={ch.using_gtid}")
            if ch.last_io_errno:
                line += f" io_error={ch.last_io_errno}"
            if ch.last_sql_errno:
                line += f" sql_error={ch.last_sql_errno}: {ch.last_sql_error}"
        lines.append(line)
    return lines


# -- actions -------------------------------------------------------------------------------------------


@register
class Observe(Action[MariaDBAPI, NoParams]):
    name = "mariadb.observe"
    effect = Effect.READ
    description = "Probe every server in parallel (variables, GTID positions, replication status)"

    def propose(self, ctx: Ctx) -> Proposal:
        from drengine.datastores.mariadb.connector import VARIABLES_SQL

        stmts = [Statement(m.name, VARIABLES_SQL) for m in ctx.cluster.members]
        stmts += [Statement(m.name, "SHOW ALL SLAVES STATUS") for m in ctx.cluster.members]
        return Proposal(summary=f"probe {len(ctx.cluster.members)} servers in parallel", statements=stmts)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.backend.observe()
        reachable = [s for s in view.servers if s.reachable]
        summary = f"{len(reachable)} of {len(view.servers)} servers answered"
        if not reachable:
            return StepResult(ok=False, summary=f"no server answered: {'; '.join(s.name + ': ' + s.error for s in view.servers)}",
                              facts={"view": view}, evidence=_view_lines(view))
        return StepResult(ok=True, summary=summary, facts={"view": view}, evidence=_view_lines(view))


@register
class CheckNoPrimary(Action[MariaDBAPI, NoParams]):
    name = "mariadb.check_no_primary"
    effect = Effect.CHECK
    description = "Refuse while a writable primary answers; a silent one that replicas still follow is fenced later"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="check that no primary is alive")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("view", ClusterView)
        writable = writable_primaries(view)
        if writable:
            names = ", ".join(f"{w.name} ({w.address}:{w.port})" for w in writable)
            return StepResult(ok=False, summary=f"a writable primary is reachable: {names}", refusal=Refusal(
                observed=f"{names} answer(s) with read_only=0 and no replication configured",
                expected="no reachable writable primary (the primary is dead or unreachable)",
                why="promoting a replica while the primary still takes writes makes two primaries: "
                    "the data written on each side diverges (split brain)",
                next_steps="if the primary is healthy there is nothing to recover; if it must be replaced, override "
                           "this check: drengine then fences it (read-only and its clients cut, or stopped, or killed, "
                           "or out of the proxies) before it promotes a replica",
                risk_if_overridden=f"{names} is fenced and replaced; writes it took that no replica received are lost",
            ), evidence=_view_lines(view))
        receiving = [s for s in view.servers if s.reachable and any(ch.io_running == "Yes" for ch in s.channels)]
        if receiving:
            names = ", ".join(s.name for s in receiving)
            # Not a refusal: the silent primary is fenced behind a dangerous gate before anything is promoted.
            return StepResult(ok=True, summary=f"no writable primary answers drengine, but {names} still receive(s) from "
                                               f"one (Slave_IO_Running: Yes): it is hung or partitioned from drengine, "
                                               f"and is fenced before any promotion")
        # No evidence on success: the observe step just showed the same servers.
        return StepResult(ok=True, summary="no writable primary is reachable and no replica receives from one")


@register
class ChooseSurvivor(Action[MariaDBAPI, NoParams]):
    name = "mariadb.choose_survivor"
    effect = Effect.READ
    description = "Choose the most advanced eligible replica, and say why"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="rank the replicas by received and applied GTID positions")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("view", ClusterView)
        decision = choose_survivor(view)
        evidence = [f"{c.name}: received {c.received or '-'} applied {c.applied or '-'}"
                    + ("" if c.eligible else f" (not eligible: {c.note})") for c in decision.ranking]
        evidence += [f"RISK: {r}" for r in decision.risks]
        if decision.chosen is None:
            return StepResult(ok=False, summary=decision.reason, facts={"survivor": decision}, evidence=evidence)
        server = view.server(decision.chosen)
        primary = NewPrimary(name=server.name, address=server.address, port=server.port)
        return StepResult(ok=True, summary=f"chose {decision.chosen}: {decision.reason}",
                          facts={"survivor": decision, "new_primary": primary}, evidence=evidence)


class CatchUpParams(StepParams):
    catch_up_timeout: float | None = Field(default=None, gt=0, description="seconds; default: the cluster's catch_up timeout")


@register
class Promote(Action[MariaDBAPI, CatchUpParams]):
    name = "mariadb.promote"
    effect = Effect.MUTATE
    Params = CatchUpParams
    description = "Apply the relay log, stop replication and make the survivor writable"
    _decided: SurvivorDecision | None = None  # set by propose, from a fresh observation

    def _timeout(self, ctx: Ctx) -> float:
        p = self.params
        return p.catch_up_timeout or ctx.cluster.timeouts.catch_up

    def _catch_up_to(self, ctx: Ctx, decision: SurvivorDecision) -> str:
        """What the survivor must apply first: what it received, and everything an old primary
        fenced read-only (still running, still replicating) had written."""
        fencing = ctx.facts.maybe("fencing", Fencing)
        fenced = fencing.of(decision.old_primary) if fencing is not None else None
        final = fenced.final_position if fenced is not None else ""
        return gtid.render(gtid.merge_max(gtid.parse(decision.catch_up_to), gtid.parse(final)))

    def _statements(self, ctx: Ctx, decision: SurvivorDecision, server: ServerView | None) -> list[Sql]:
        stmts: list[Sql] = []
        catch_up = self._catch_up_to(ctx, decision)
        if catch_up:
            if server is None or any(ch.sql_running != "Yes" for ch in server.channels):
                stmts.append(START_SQL_THREAD)
            stmts.append(gtid_wait(catch_up, self._timeout(ctx)))
        return [*stmts, STOP_SLAVE, RESET_SLAVE_ALL, READ_WRITE]

    def _decide(self, ctx: Ctx) -> tuple[SurvivorDecision, ClusterView]:
        """The survivor, from a fresh observation: the one chosen earlier may be stale (the most
        advanced replica woke up while a gate waited or while drengine was down after the fence:
        issue 21, defect 1). A changed choice changes the proposal, so its gate is asked again.
        A survivor already out of replication is the promotion this step began before an interruption."""
        earlier = ctx.facts.get("survivor", SurvivorDecision)
        view = ctx.backend.observe()
        began = earlier.chosen is not None and view.server(earlier.chosen).reachable and \
            not view.server(earlier.chosen).channels
        fresh = choose_survivor(view)
        if began or fresh.chosen is None:
            return earlier, view
        if not fresh.old_primary:
            fresh = fresh.model_copy(update={"old_primary": earlier.old_primary})
        return fresh, view

    def _decision(self, ctx: Ctx) -> SurvivorDecision:
        """What this step's proposal decided (run and took_effect act on it, never on an older fact)."""
        return self._decided if self._decided is not None else ctx.facts.get("survivor", SurvivorDecision)

    def result_after_interruption(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision = self._decision(ctx)
        assert decision.chosen is not None
        server = ctx.backend.probe(decision.chosen)
        return StepResult(ok=True, summary=f"{proposal.summary} (had taken effect before the interruption)",
                          facts={"survivor": decision,
                                 "new_primary": NewPrimary(name=server.name, address=server.address, port=server.port)})

    def propose(self, ctx: Ctx) -> Proposal:
        decision, view = self._decide(ctx)
        self._decided = decision
        assert decision.chosen is not None
        server = view.server(decision.chosen)
        stmts = self._statements(ctx, decision, server)
        fencing = ctx.facts.maybe("fencing", Fencing)
        risks = decision.risks + self._old_primary_risks(ctx, decision, fencing)
        return Proposal(
            summary=f"promote {decision.chosen} to primary",
            reason=decision.reason + (f". Fencing: {fencing.summary()}" if fencing is not None and fencing.members else ""),
            statements=[s.on(decision.chosen) for s in stmts],
            gate=GateLevel.DANGEROUS if risks else GateLevel.CONFIRM,
            risks=risks,
            evidence=fencing.lines() if fencing is not None else [],
        )

    def _old_primary_risks(self, ctx: Ctx, decision: SurvivorDecision, fencing: Fencing | None) -> list[str]:
        """The old primary as it is now (not as first observed: it may have come back while the run
        waited, or while drengine was down before a resume): writable again, or neither confirmed
        dead nor fenced, it is a split brain the gate must name."""
        if decision.old_primary not in {m.name for m in ctx.cluster.members}:
            return []
        now = ctx.backend.probe(decision.old_primary)
        if now.is_writable_primary:
            return [f"split brain: {now.name} answers again and takes writes (read_only=0, no replication); promoting "
                    f"{decision.chosen} makes two primaries. Stop here and run the runbook again: it refuses while a "
                    f"primary answers, and fences it if you override"]
        return split_brain_risks(fencing, [(now.name, now.state, now.error)])

    def _no_primary_answers(self, ctx: Ctx, decision: SurvivorDecision) -> None:
        """Right before the first statement: a server that answers writable now (the old primary
        back while the gate waited, or while drengine was down) makes a promotion two primaries.
        No gate answer excuses that: the check-no-primary step refuses it, and fences it if overridden."""
        if decision.old_primary not in {m.name for m in ctx.cluster.members}:
            return
        now = ctx.backend.probe(decision.old_primary)
        if now.is_writable_primary:
            raise StepFailed(f"{now.name} answers again and takes writes (read_only=0, no replication): promoting "
                             f"{decision.chosen} would make two primaries; nothing was sent. Run the runbook again: it "
                             f"refuses while a primary answers, and fences it first if you override that check")

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        decision = self._decision(ctx)
        assert decision.chosen is not None
        server = ctx.backend.observe().server(decision.chosen)
        return server.reachable and not server.channels and not server.read_only

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision = self._decision(ctx)
        name = decision.chosen
        assert name is not None
        api = ctx.backend
        self._no_primary_answers(ctx, decision)
        server = _probe_one(api, name)
        catch_up = self._catch_up_to(ctx, decision)
        if server.channels and catch_up:
            if any(ch.sql_running != "Yes" for ch in server.channels):
                # Start only the SQL thread: stopping or restarting the IO thread would discard the relay log.
                _send(ctx, name, START_SQL_THREAD)
            wait = gtid_wait(catch_up, self._timeout(ctx))
            rows = api.query(name, wait, timeout=self._timeout(ctx))
            ctx.sent(wait.on(name), result=str(rows[0][0] if rows else None))
            if not rows or rows[0][0] != 0:
                raise StepFailed(
                    f"{name} did not apply its relay log up to {catch_up} within {self._timeout(ctx):g} s; "
                    f"not promoting (stopping replication now would throw those transactions away). Check "
                    f"Last_SQL_Error on {name}, then resume the run or raise catch_up_timeout"
                )
        if _threads_running(server):
            _send(ctx, name, STOP_SLAVE)
        if server.channels:
            _send(ctx, name, RESET_SLAVE_ALL)
        if server.read_only or server.channels:
            _send(ctx, name, READ_WRITE)
        after = _probe_one(api, name)
        if after.channels or after.read_only:
            raise StepFailed(
                f"after the promotion statements {name} still shows replication or read_only=1 "
                f"({'; '.join(_view_lines(_single(after)))}); expected no replication and read_only=0. Look for another "
                f"session or an init file setting read_only back, then resume the run"
            )
        # The later steps follow the survivor promoted here (it may differ from the first choice).
        primary = NewPrimary(name=after.name, address=after.address, port=after.port)
        return StepResult(ok=True, summary=f"{name} is now a writable primary at {after.gtid_binlog_pos or 'empty position'}",
                          evidence=_view_lines(_single(after)), facts={"survivor": decision, "new_primary": primary})


def _single(server: ServerView) -> ClusterView:
    """One server's view as a cluster view, to describe it (`_view_lines`); no look was taken at any time."""
    return ClusterView(cluster="", servers=[server], observed_at=0.0)


def _probe_one(api: MariaDBAPI, name: str) -> ServerView:
    server = api.probe(name)
    if not server.reachable:
        raise StepFailed(
            f"{name} answered the first probe but is not reachable any more ({server.error}); check the server, "
            f"then resume the run (statements already sent are not sent again)"
        )
    return server


def _repoint_statements(ctx: Ctx, primary: NewPrimary, demote: bool = False) -> list[Sql]:
    api = ctx.backend
    return [STOP_SLAVE, change_master(primary.address, primary.port, api.replication_user, api.replication_password,
                                      demote=demote), START_SLAVE]


def _points_at(server: ServerView, primary: NewPrimary) -> bool:
    return any((ch.master_host, ch.master_port) == (primary.address, primary.port)
               and ch.using_gtid == "Slave_Pos" for ch in server.channels)


def _threads_running(server: ServerView) -> bool:
    return any(ch.io_running != "No" or ch.sql_running != "No" for ch in server.channels)


def _follows(server: ServerView, primary: NewPrimary) -> bool:
    return _points_at(server, primary) and all(
        ch.io_running != "No" and ch.sql_running != "No" for ch in server.channels)


def _make_replica(ctx: Ctx, name: str, server: ServerView, primary: NewPrimary, demote: bool = False) -> None:
    """Check, then act, statement by statement: a resumed run sends only what is still missing."""
    stop, change, start = _repoint_statements(ctx, primary, demote=demote)
    if not _points_at(server, primary):
        if _threads_running(server):
            _send(ctx, name, stop)
        _send(ctx, name, change)
    _send(ctx, name, start)


@register
class Repoint(Action[MariaDBAPI, NoParams]):
    name = "mariadb.repoint_replicas"
    effect = Effect.MUTATE
    description = "Point every other reachable replica at the new primary (GTID, slave_pos)"

    def _targets(self, ctx: Ctx) -> tuple[list[str], list[str]]:
        # What is true now, not what the first observation saw: a replica may have come back
        # (or gone) since, e.g. while the run waited at a gate or before a resume.
        view = ctx.backend.observe()
        primary = ctx.facts.get("new_primary", NewPrimary)
        decision = ctx.facts.maybe("survivor", SurvivorDecision)
        old = decision.old_primary if decision else ""
        reachable = [s.name for s in view.servers if s.reachable and s.name != primary.name and s.channels]
        later = [s.name for s in view.servers if not s.reachable and s.name != primary.name and s.name != old]
        return reachable, later

    def propose(self, ctx: Ctx) -> Proposal:
        primary = ctx.facts.get("new_primary", NewPrimary)
        targets, later = self._targets(ctx)
        stmts = [s.on(t) for t in targets for s in _repoint_statements(ctx, primary)]
        reason = f"they must follow {primary.name} by GTID from their own applied position (slave_pos)"
        if later:
            reason += f"; unreachable now, repoint when back (mariadb-rejoin): {', '.join(later)}"
        return Proposal(summary=f"repoint {', '.join(targets) or 'no replica'} to {primary.name}", reason=reason,
                        statements=stmts, nothing_to_do=not targets)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        primary = ctx.facts.get("new_primary", NewPrimary)
        targets, _ = self._targets(ctx)
        view = ctx.backend.observe()
        return all(_follows(view.server(t), primary) for t in targets if view.server(t).reachable)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        primary = ctx.facts.get("new_primary", NewPrimary)
        targets, later = self._targets(ctx)
        done, skipped = [], []
        for name in targets:
            server = _probe_one(ctx.backend, name)
            if _follows(server, primary):
                skipped.append(name)
                continue
            _make_replica(ctx, name, server, primary)
            done.append(name)
        summary = f"repointed {', '.join(done) or 'none'} to {primary.name}"
        if skipped:
            summary += f"; already following it: {', '.join(skipped)}"
        if later:
            summary += f"; repoint later (unreachable): {', '.join(later)}"
        return StepResult(ok=True, summary=summary)




@register
class VerifyReplication(Action[MariaDBAPI, NoParams]):
    name = "mariadb.verify_replication"
    effect = Effect.MUTATE
    # It only writes drengine's own heartbeat/canary and reads it back: running it again is harmless.
    repeatable = True
    # It only writes a row into drengine's own heartbeat table, so it needs no confirmation.
    min_gate = GateLevel.NONE
    description = "Write a heartbeat on the primary and wait for it on every replica"

    def _write(self, ctx: Ctx) -> Sql:
        return Sql("REPLACE INTO drengine.heartbeat (id, written_at) VALUES (%s, %s)", ("recovery-check", round(ctx.clock.wall(), 3)))

    def propose(self, ctx: Ctx) -> Proposal:
        primary = ctx.facts.get("new_primary", NewPrimary)
        stmts = [s.on(primary.name) for s in [*HEARTBEAT_DDL, self._write(ctx), Sql("SELECT @@gtid_binlog_pos")]]
        stmts.append(Statement("each replica", "SELECT MASTER_GTID_WAIT('<position of the heartbeat>', <catch_up>)"))
        return Proposal(summary=f"verify a write on {primary.name} reaches every replica", statements=stmts)

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        return False  # harmless to repeat: it only rewrites the heartbeat row

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        primary = ctx.facts.get("new_primary", NewPrimary)
        api = ctx.backend
        for sql in [*HEARTBEAT_DDL, self._write(ctx)]:
            _send(ctx, primary.name, sql)
        pos_rows = api.query(primary.name, Sql("SELECT @@gtid_binlog_pos"))
        pos = str(pos_rows[0][0]) if pos_rows else ""
        view = api.observe()
        head = view.server(primary.name)
        problems, evidence = [], _view_lines(view)
        if not head.is_writable_primary:
            problems.append(f"{primary.name} is not a writable primary (read_only={int(head.read_only)}, "
                            f"{len(head.channels)} replication channel(s))")
        followers = [s for s in view.servers if s.reachable and _follows(s, primary)]
        strays = [s.name for s in view.servers if s.reachable and s.name != primary.name and not _follows(s, primary)]
        timeout = ctx.cluster.timeouts.catch_up
        for s in followers:
            ch = s.channels[0]
            if ch.last_io_errno or ch.last_sql_errno:
                problems.append(f"{s.name}: replication error IO {ch.last_io_errno} {ch.last_io_error} / "
                                f"SQL {ch.last_sql_errno} {ch.last_sql_error}")
                continue
            wait = gtid_wait(pos, timeout)
            rows = api.query(s.name, wait, timeout=timeout)
            if not rows or rows[0][0] != 0:
                problems.append(f"{s.name} did not receive the heartbeat {pos} within {timeout:g} s")
                continue
            after = _probe_one(api, s.name)
            ch = after.channels[0]
            if ch.io_running != "Yes" or ch.sql_running != "Yes":
                problems.append(f"{s.name}: IO={ch.io_running} SQL={ch.sql_running}, expected both Yes")
        if problems:
            return StepResult(ok=False, summary="verification failed: " + "; ".join(problems), evidence=evidence)
        summary = f"{primary.name} is writable; heartbeat {pos} reached {', '.join(s.name for s in followers) or 'no replica'}"
        if strays:
            summary += f"; not following it: {', '.join(strays)} (rejoin them with mariadb-rejoin)"
        return StepResult(ok=True, summary=summary, evidence=evidence)


@register
class PlanRejoin(Action[MariaDBAPI, NoParams]):
    name = "mariadb.plan_rejoin"
    effect = Effect.READ
    description = "Find the primary and the servers that do not follow it"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="find the primary and the returned servers")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        view = ctx.facts.get("view", ClusterView)
        decision = plan_rejoin(view)
        evidence = [f"{s.name}: " + ("has transactions the primary lacks: " + s.errant_pos if s.errant else "no errant transactions")
                    for s in decision.strays]
        if decision.primary is None:
            return StepResult(ok=False, summary=decision.reason, facts={"rejoin": decision}, evidence=evidence)
        p = view.server(decision.primary)
        return StepResult(ok=True, summary=decision.reason, evidence=evidence,
                          facts={"rejoin": decision, "new_primary": NewPrimary(name=p.name, address=p.address, port=p.port)})


@register
class CheckNoErrant(Action[MariaDBAPI, NoParams]):
    name = "mariadb.check_no_errant"
    effect = Effect.CHECK
    description = "Refuse to rejoin a server holding transactions the primary lacks"

    def propose(self, ctx: Ctx) -> Proposal:
        return Proposal(summary="check the returned servers for errant transactions")

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision = ctx.facts.get("rejoin", RejoinDecision)
        bad = [s for s in decision.strays if s.errant]
        if not bad:
            return StepResult(ok=True, summary="no returned server holds transactions the primary lacks")
        desc = "; ".join(f"{s.name} has " + ", ".join(f"{n} transaction(s) in domain {d}" for d, n in s.errant.items())
                         + f" up to {s.errant_pos}" for s in bad)
        return StepResult(ok=False, summary=f"errant transactions: {desc}", refusal=Refusal(
            observed=desc,
            expected=f"every returned server's GTID position to be contained in {decision.primary}'s",
            why="those transactions were written on the old primary and never replicated: rejoining would stop "
                "replication with a GTID strict-mode error, or leave that server with data nobody else has",
            next_steps=f"save what those transactions changed if it matters (mariadb-binlog on the old primary), "
                       f"then rebuild the server from a backup of {decision.primary}; or override this check",
            risk_if_overridden="the server keeps rows the rest of the cluster lacks and replication may stop on conflicts",
        ))


@register
class Rejoin(Action[MariaDBAPI, NoParams]):
    name = "mariadb.rejoin"
    effect = Effect.MUTATE
    description = "Make each returned server read-only and a GTID replica of the primary"

    def propose(self, ctx: Ctx) -> Proposal:
        decision = ctx.facts.get("rejoin", RejoinDecision)
        primary = ctx.facts.get("new_primary", NewPrimary)
        stmts = []
        for stray in decision.strays:
            stmts += [s.on(stray.name) for s in [READ_ONLY, *_repoint_statements(ctx, primary, demote=True)]]
        risky = [s for s in decision.strays if s.errant]
        return Proposal(
            summary=f"rejoin {', '.join(s.name for s in decision.strays) or 'nothing'} as replica(s) of {primary.name}",
            reason="MASTER_DEMOTE_TO_SLAVE=1 turns the server's own binlog position into its replication position, "
                   "so it continues from what it has",
            statements=stmts, nothing_to_do=not decision.strays,
            gate=GateLevel.DANGEROUS if risky else GateLevel.CONFIRM,
            risks=[f"{s.name} holds errant transactions up to {s.errant_pos}" for s in risky],
        )

    def took_effect(self, ctx: Ctx, proposal: Proposal) -> bool:
        decision = ctx.facts.get("rejoin", RejoinDecision)
        primary = ctx.facts.get("new_primary", NewPrimary)
        view = ctx.backend.observe()
        return all(_follows(view.server(s.name), primary) for s in decision.strays)

    def run(self, ctx: Ctx, proposal: Proposal) -> StepResult:
        decision = ctx.facts.get("rejoin", RejoinDecision)
        primary = ctx.facts.get("new_primary", NewPrimary)
        done = []
        for stray in decision.strays:
            server = _probe_one(ctx.backend, stray.name)
            if not _follows(server, primary):
                if not server.read_only:
                    _send(ctx, stray.name, READ_ONLY)
                _make_replica(ctx, stray.name, server, primary, demote=True)
                done.append(stray.name)
            ctx.undone("mariadb.fenced", stray.name)  # a replica of the primary: no longer a fenced old primary
        return StepResult(ok=True, summary=f"{', '.join(done) or 'nothing'} now replicate(s) from {primary.name}")


# The fencing and traffic steps live beside these (importing them registers them).
from drengine.datastores.mariadb import traffic as _traffic  # noqa: E402,F401
