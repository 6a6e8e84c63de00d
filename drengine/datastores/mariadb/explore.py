"""The fault space of the MariaDB runbooks, for `drengine explore`: generated replication
topologies (the primary dead, hung or alive; replicas dead, hung, behind or ahead, with
unapplied relay logs, errant transactions, replication stopped, binary log or
log_slave_updates off, lagging IO threads; or a failover already done and the old primary
back), and the invariants, computed from the simulator's own servers:

- never a second server accepting writes (read_only=0, process running or hung) made by
  the run while another one accepts writes, unless the operator accepted that risk;
- a server made writable holds every transaction any reachable server held at that moment
  (applied or in its relay log), unless the operator accepted losing that server's;
- the goal (success implies it): exactly one server accepts writes and every other
  reachable server replicates from it, both threads running, without error.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from drengine.datastores.mariadb.sim import SimCluster, SimServer, Txn
from drengine.explore.kit import Kit, Ledger, Situation, Violation, Watch, digits, pick, portion
from drengine.explore.scenario import MemberSpec
from drengine.journal import Entry
from drengine.simstate import Parse, snapshot

Process = str  # "alive", "dead", "hung"


def _txns(server_id: int, first: int, count: int) -> list[Txn]:
    return [Txn(gtid=f"0-{server_id}-{seq}") for seq in range(first, first + count)]


def _position(txns: list[Txn]) -> str:
    return txns[-1].gtid if txns else ""


def _member(i: int) -> MemberSpec:
    return MemberSpec(name=f"db{i + 1}", address=f"127.0.1.{11 + i}", port=3306)


# One draw per server (see kit.digits): generation is most of the cost of a scenario otherwise.
SERVER = digits(8)
CLUSTER = digits(6)


def _replica(draw: st.DrawFn, i: int, history: list[Txn], source: str | None) -> SimServer:
    """A replica of `source` holding a prefix of `history` (applied, then received), maybe with
    transactions of its own (errant), replication stopped, or its binary log settings off."""
    member = _member(i)
    d = draw(SERVER)
    applied = len(history) - portion(d[0], len(history))  # usually everything
    received = portion(d[1], len(history) - applied)
    errant = pick(d[2], 0, 1, 2)
    process = pick(d[3], "alive", "dead", "hung", percent=80)
    threads = pick(d[4], "running", "sql-stopped", "io-stopped", "stopped")
    binlog = pick(d[5], "on", "log_slave_updates-off", "binlog-off", percent=85)
    lag = pick(d[6], 0, 1, 3)
    if pick(d[7], False, True, percent=50):  # half the replicas are behind by some amount
        applied = portion(d[0], len(history))
    mine = history[:applied]
    own = _txns(i + 1, len(mine) + 1, errant)
    replica = SimServer(
        name=member.name, address=member.address, port=member.port, server_id=i + 1,
        alive=process != "dead", hung=process == "hung", read_only=True,
        log_bin=binlog != "binlog-off", log_slave_updates=binlog == "on",
        applied=mine + own, relay=history[applied:applied + received],
        relay_valid=threads != "stopped", source=source,
        io_on=threads in ("running", "sql-stopped"), sql_on=threads in ("running", "io-stopped"),
        lag=lag, slave_pos=_position(mine),
    )
    if source is None:  # replication never configured (or reset): nothing received, no threads
        replica.io_on = replica.sql_on = False
        replica.relay = []
    return replica


@st.composite
def primary_lost(draw: st.DrawFn) -> Situation:
    """db1 was the primary; it is dead (or hung, or alive after all); the replicas hold what
    they hold."""
    d = draw(CLUSTER)
    count = pick(d[0], 3, 2, 4, percent=50)
    history = _txns(1, 1, pick(d[1], 3, 0, 1, 2, 5, 8, percent=40))
    process = pick(d[2], "dead", "hung", "alive", percent=70)
    first = _member(0)
    primary = SimServer(name=first.name, address=first.address, port=first.port, server_id=1,
                        alive=process != "dead", hung=process == "hung", read_only=False, applied=history)
    replicas = [_replica(draw, i, history, first.name) for i in range(1, count)]
    label = f"primary {process}, {count - 1} replica(s), {len(history)} transaction(s)"
    return Situation(label, [_member(i) for i in range(count)],
                     SimCluster(servers=[primary, *replicas]).model_dump(mode="json"))


@st.composite
def failed_over(draw: st.DrawFn) -> Situation:
    """db2 was promoted after db1 died; db1 is back (writable or not, with or without writes
    nobody else has), the others follow db2 (or still db1, or nobody)."""
    d = draw(CLUSTER)
    count = pick(d[0], 3, 2, 4, percent=50)
    base = _txns(1, 1, pick(d[1], 3, 0, 1, 6, percent=50))
    after = _txns(2, len(base) + 1, pick(d[2], 2, 0, 4, percent=50))
    errant = pick(d[3], 0, 1, 2, percent=60)
    old_process = pick(d[4], "alive", "dead", "hung", percent=70)
    old_writable, new_process = pick(d[5] % 10, True, False, percent=6), pick(d[5] // 10, "alive", "dead", "hung", percent=8)
    first, second = _member(0), _member(1)
    old = SimServer(name=first.name, address=first.address, port=first.port, server_id=1,
                    alive=old_process != "dead", hung=old_process == "hung", read_only=not old_writable,
                    applied=base + _txns(1, len(base) + 1, errant))
    new = SimServer(name=second.name, address=second.address, port=second.port, server_id=2,
                    alive=new_process != "dead", hung=new_process == "hung", read_only=False,
                    applied=base + after, slave_pos=_position(base))
    others = []
    for i in range(2, count):
        source = pick(draw(SOURCE), second.name, first.name, None)
        others.append(_replica(draw, i, base + after if source == second.name else base, source))
    label = (f"failed over to db2 ({new_process}); old primary db1 {old_process}"
             f"{', writable' if old_writable else ''}{f', {errant} errant' if errant else ''}; {count} servers")
    return Situation(label, [_member(i) for i in range(count)],
                     SimCluster(servers=[old, new, *others]).model_dump(mode="json"))


SOURCE = st.integers(0, 99)


def accepts_writes(s: SimServer) -> bool:
    """A server process (running, or hung and able to wake up) that takes writes."""
    return s.alive and not s.read_only


def reachable(s: SimServer) -> bool:
    return s.alive and not s.hung


def held(s: SimServer) -> set[str]:
    return {t.gtid for t in s.applied} | {t.gtid for t in s.relay}


class MariaDBWatch(Watch):
    def __init__(self) -> None:
        self.writable: set[str] | None = None

    def after_event(self, entry: Entry, model: Any, ledger: Ledger) -> list[Violation]:
        if model is None:
            return []
        sim: SimCluster = model
        now = {s.name for s in sim.servers if accepts_writes(s)}
        before, self.writable = self.writable, now
        if before is None:
            return []
        found = []
        for name in sorted(now - before):
            found += self._made_writable(sim, sim.server(name), now, ledger)
        return found

    def _made_writable(self, sim: SimCluster, promoted: SimServer, writable: set[str], ledger: Ledger) -> list[Violation]:
        found = []
        others = sorted(writable - {promoted.name})
        for other in others:
            if not ledger.chose(other) and not ledger.chose("split brain"):
                found.append(Violation("mariadb.one-writable-primary",
                                       f"{promoted.name} was made writable while {other} "
                                       f"({'hung' if sim.server(other).hung else 'running'}) also accepts writes, "
                                       f"and no approved risk named {other}"))
        mine = {t.gtid for t in promoted.applied}
        for s in sim.servers:
            if s is promoted or not reachable(s):
                continue
            lost = sorted(held(s) - mine)
            if lost and not ledger.chose(s.name):
                found.append(Violation("mariadb.promoted-holds-everything",
                                       f"{promoted.name} was made writable without {len(lost)} transaction(s) that "
                                       f"reachable {s.name} held ({', '.join(lost[:4])}{', ...' if len(lost) > 4 else ''}), "
                                       f"and no approved risk named {s.name}"))
        return found


def replication_goal(sim: SimCluster) -> str | None:
    """None when exactly one server accepts writes and every other reachable server replicates
    from it with both threads running and no error; else what is wrong."""
    sim = snapshot(sim)  # settled below: the state judged must not move
    sim.settle()
    writable = [s for s in sim.servers if accepts_writes(s)]
    if len(writable) != 1:
        return f"{len(writable)} servers accept writes ({', '.join(s.name for s in writable) or 'none'})"
    primary = writable[0]
    if not reachable(primary):
        return f"the only writable server, {primary.name}, does not answer"
    for s in sim.servers:
        if s is primary or not reachable(s):
            continue
        if s.source != primary.name or not (s.io_on and s.sql_on) or s.sql_error or s.io_error:
            return (f"{s.name} does not replicate from {primary.name} (source {s.source}, IO {s.io_on}, "
                    f"SQL {s.sql_on}, error {s.sql_error or s.io_error})")
    return None


PROMOTE = st.integers(0, 9).flatmap(lambda v: primary_lost() if v < 8 else failed_over())
REJOIN = st.integers(0, 9).flatmap(lambda v: failed_over() if v < 8 else primary_lost())


class MariaDBKit(Kit):
    kind = "mariadb"
    runbooks = ("mariadb-promote-survivor", "mariadb-rejoin")
    ops = ("kill", "hang", "revive")
    flaps = ("kill", "hang")

    def situations(self, runbook: str) -> st.SearchStrategy[Situation]:
        return REJOIN if runbook == "mariadb-rejoin" else PROMOTE

    def model(self, backend: Any) -> Any:
        return backend.sim

    def load(self, state: dict[str, Any]) -> Any:
        return SimCluster.model_validate(state)

    def load_text(self, text: str) -> Any:
        return SimCluster.model_validate_json(text)

    def saved_state(self) -> Parse[Any]:
        return SimCluster

    def applies(self, model: Any, op: str, member: str) -> bool:
        s: SimServer = model.server(member)
        return {"kill": s.alive, "hang": s.alive and not s.hung, "revive": not s.alive or s.hung}.get(op, True)

    def goal(self, runbook: str, model: Any, watch: Watch) -> str | None:
        return replication_goal(model)

    def watch(self, runbook: str) -> Watch:
        return MariaDBWatch()

    def mutating(self, language: str, text: str) -> bool:
        return not text.lstrip().upper().startswith(("SELECT", "SHOW"))

    def once(self, language: str, text: str) -> bool:
        # CHANGE MASTER and RESET SLAVE throw the relay log away, MASTER_DEMOTE_TO_SLAVE rewrites the
        # replication position, writes add transactions: never twice. Starting or stopping threads and
        # setting read_only set a state: sent again when that state is not there any more.
        upper = text.lstrip().upper()
        return upper.startswith(("CHANGE MASTER", "RESET ", "INSERT", "UPDATE", "DELETE")) or (
            upper.startswith("REPLACE") and "DRENGINE." not in upper)


KIT = MariaDBKit()
