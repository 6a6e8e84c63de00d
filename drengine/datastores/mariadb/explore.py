"""The fault space of the MariaDB runbooks, for `drengine explore`: generated replication
topologies (the primary dead, hung or alive; replicas dead, hung, behind or ahead, with
unapplied relay logs, errant transactions, replication stopped, binary log or
log_slave_updates off, lagging IO threads; or a failover already done and the old primary
back), with the data placed on the members in any order, each member on a host with a pid
file and an HAProxy in front; and the invariants, judged against the oracle
(mariadb/oracle.py, from the simulator's own servers):

- a server made writable while another accepts writes is a violation unless the operator
  overrode the check that refused it;
- a server made writable loses no transaction some other promotable reachable choice would
  have kept (loss that every choice suffers is not a violation), unless the operator named it;
- mariadb-rejoin never repoints a server whose own transactions the primary lacks, unless the
  operator overrode the errant-transaction check;
- after a successful run, every dead server restarted and every hung one woken (in a copy of
  the final state): at most one accepts writes (fencing, judged by its outcome);
- the goal (success implies it): exactly one server accepts writes, every other reachable
  server replicates from it, both threads running, without error, the proxies write to it;
- liveness: when a promotable replica holds everything (promote) or every stray can rejoin
  (rejoin), a run with every gate approved ends DONE.
"""

from __future__ import annotations

from itertools import permutations
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from drengine.datastores.mariadb.oracle import (
    accepts_writes,
    better_choices,
    held,
    indistinguishable,
    promotion_possible,
    reachable,
    rejoin_possible,
    replication_goal,
    revived,
)
from drengine.datastores.mariadb.sim import SimCluster, SimServer, Txn
from drengine.engine import FRESH_FOR
from drengine.explore.kit import Kit, Ledger, Situation, Violation, Watch, digits, pick, portion
from drengine.explore.scenario import MemberSpec, WorldChange
from drengine.haproxy import AdminState, SimProxy
from drengine.journal import Entry
from drengine.simstate import Parse

Process = str  # "alive", "dead", "hung"
PROXY = "haproxy1"
WRITE, READ = "mariadb_write", "mariadb_read"
MOST = 4  # members at most


def _txns(server_id: int, first: int, count: int) -> list[Txn]:
    return [Txn(gtid=f"0-{server_id}-{seq}") for seq in range(first, first + count)]


def _position(txns: list[Txn]) -> str:
    return txns[-1].gtid if txns else ""


def _member(i: int) -> MemberSpec:
    return MemberSpec(name=f"db{i + 1}", address=f"127.0.1.{11 + i}", port=3306)


# One draw per server (see kit.digits): generation is most of the cost of a scenario otherwise.
SERVER = digits(8)
CLUSTER = digits(7)
SOURCE = st.integers(0, 99)


def _replica(draw: st.DrawFn, i: int, history: list[Txn], source: str | None) -> SimServer:
    """A replica of `source` holding a prefix of `history` (applied, then received), maybe with
    transactions of its own (errant), replication stopped, or its binary log settings off."""
    member = _member(i)
    d = draw(SERVER)
    applied = len(history) - portion(d[0], len(history))  # usually everything
    received = portion(d[1], len(history) - applied)
    errant = pick(d[2], 0, 1, 2)
    process = pick(d[3], "alive", "dead", "hung", "hung", percent=70)  # a hung survivor may wake at any time
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


def _placed(servers: list[SimServer], digit: int, writer: str) -> tuple[list[SimServer], str]:
    """The same servers on the members in another order (their data, server_id and process go
    with them; names and addresses are the members'): which member is the most advanced, or the
    old primary, must not follow the inventory's order. Digit 0 keeps the order."""
    orders = list(permutations(range(len(servers))))
    order = orders[digit * len(orders) // 100]
    names = {servers[k].name: _member(i) for i, k in enumerate(order)}
    placed = []
    for i, k in enumerate(order):
        member, source = _member(i), servers[k].source
        placed.append(servers[k].model_copy(update={"name": member.name, "address": member.address,
                                                    "source": names[source].name if source else None}))
    return placed, names[writer].name


def _proxies(names: list[str], writer: str) -> list[SimProxy]:
    """One HAProxy: its write backend sends writes to the primary there was, the others in maint."""
    write: dict[str, AdminState] = {n: "ready" if n == writer else "maint" for n in names}
    read: dict[str, AdminState] = {n: "ready" for n in names}
    return [SimProxy(name=PROXY, admin={WRITE: write, READ: read})]


def _situation(label: str, servers: list[SimServer], digit: int, writer: str) -> Situation:
    placed, writer = _placed(servers, digit, writer)
    names = [s.name for s in placed]
    sim = SimCluster(servers=placed, proxies=_proxies(names, writer))
    return Situation(label, [_member(i) for i in range(len(placed))], sim.model_dump(mode="json"))


@st.composite
def primary_lost(draw: st.DrawFn) -> Situation:
    """The primary is dead (or hung, or alive after all); the replicas hold what they hold."""
    d = draw(CLUSTER)
    count = pick(d[0], 3, 2, 4, percent=50)
    history = _txns(1, 1, pick(d[1], 3, 0, 1, 2, 5, 8, percent=40))
    process = pick(d[2], "dead", "hung", "hung", "alive", percent=52)  # a hung one is fenced: the run mutates
    first = _member(0)
    primary = SimServer(name=first.name, address=first.address, port=first.port, server_id=1,
                        alive=process != "dead", hung=process == "hung", read_only=False, applied=history)
    replicas = [_replica(draw, i, history, first.name) for i in range(1, count)]
    label = f"primary {process}, {count - 1} replica(s), {len(history)} transaction(s), order {d[6]}"
    return _situation(label, [primary, *replicas], d[6], first.name)


@st.composite
def failed_over(draw: st.DrawFn) -> Situation:
    """A replica was promoted after the old primary died; the old primary is back (writable or
    not, with or without writes nobody else has), the others follow the new one (or still the
    old one, or nobody)."""
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
    label = (f"failed over ({new_process}); old primary {old_process}"
             f"{', writable' if old_writable else ''}{f', {errant} errant' if errant else ''}; {count} servers, "
             f"order {d[6]}")
    return _situation(label, [old, new, *others], d[6], second.name)


WAKE = digits(4)


@st.composite
def wakes(draw: st.DrawFn, hung: list[str]) -> list[WorldChange]:
    """A hung replica that wakes while one of the first gates waits, or while the engine is
    dead: a run that acts on what it saw before it woke promotes a stale choice."""
    d = draw(WAKE)
    when = pick(d[0], "gate", "crash", None, percent=60)
    if when is None:
        return []
    index = pick(d[1], 1, 0, 2, 3, percent=50) if when == "gate" else 1  # gate #1: the promotion's, after the fence
    return [WorldChange(when=when, index=index, op="revive", member=hung[portion(d[2], len(hung) - 1)],
                        advance=pick(d[3], 2 * FRESH_FOR, 3600.0))]


class MariaDBWatch(Watch):
    def __init__(self, runbook: str) -> None:
        self.runbook = runbook
        self.writable: set[str] | None = None
        self.strays: set[str] = set()  # hung writable servers nobody follows (see oracle.indistinguishable)
        self.answering: set[str] = set()
        self.sources: dict[str, str | None] = {}
        self.had: dict[str, set[str]] = {}  # what each server held before the run discarded any of it

    def world(self, model: Any, what: str) -> None:
        self._baseline(model)
        self._follow(model)

    def _baseline(self, sim: SimCluster) -> None:
        # Taken at the start and after each change of the world, never after the run's own acts.
        self.answering = set()  # writable primaries seen answering since the world last changed
        self.strays = {s.name for s in sim.servers if accepts_writes(s) and indistinguishable(sim, s.name)}

    def _follow(self, sim: SimCluster) -> None:
        self.answering |= {s.name for s in sim.servers if reachable(s) and accepts_writes(s) and s.source is None}
        self.writable = {s.name for s in sim.servers if accepts_writes(s)}
        self.sources = {s.name: s.source for s in sim.servers}

    def after_event(self, entry: Entry, model: Any, ledger: Ledger) -> list[Violation]:
        if model is None:
            return []
        sim: SimCluster = model
        found: list[Violation] = []
        if self.writable is None:
            self._baseline(sim)
        else:
            now = {s.name for s in sim.servers if accepts_writes(s)}
            for name in sorted(now - self.writable):
                found += self._made_writable(sim, sim.server(name), now, ledger)
            if self.runbook == "mariadb-rejoin":
                found += self._repointed(sim, ledger)
        self._follow(sim)
        for s in sim.servers:
            self.had.setdefault(s.name, set()).update(held(s))
        return found

    def _made_writable(self, sim: SimCluster, promoted: SimServer, writable: set[str], ledger: Ledger) -> list[Violation]:
        found = []
        # Skipping the fence at its gate is the operator's own act, as is an override.
        if not ledger.overrides and "fence-old-primary" not in ledger.skipped:
            for other in sorted(writable - {promoted.name} - self.strays):
                found.append(Violation("mariadb.one-writable-primary",
                                       f"{promoted.name} was made writable while {other} "
                                       f"({'hung' if sim.server(other).hung else 'running'}) also accepts writes, "
                                       f"and no check that refused it was overridden"))
        if not ledger.overrides:
            for other in sorted(self.answering - {promoted.name}):
                found.append(Violation("mariadb.no-promotion-beside-a-live-primary",
                                       f"{promoted.name} was made writable although {other} answered as a writable "
                                       f"primary, and no check that refused it was overridden"))
        if ledger.overrides or ledger.chose(promoted.name):
            return found
        for name, kept in better_choices(sim, promoted, self.had):
            shown = ", ".join(kept[:4]) + (", ..." if len(kept) > 4 else "")
            whom = "it" if name == promoted.name else name
            found.append(Violation("mariadb.promoted-the-best-survivor",
                                   f"{promoted.name} was made writable without {len(kept)} transaction(s) ({shown}) "
                                   f"that promoting {whom}{' as it was before the run' if whom == 'it' else ''} "
                                   f"would have kept; the operator did not name {promoted.name}"))
        return found

    def _repointed(self, sim: SimCluster, ledger: Ledger) -> list[Violation]:
        """A server newly pointed at a writable primary that lacks some of its own transactions:
        they are lost to the cluster (and its replication stops), unless the operator overrode
        the errant-transaction check."""
        found = []
        for s in sim.servers:
            source = s.source
            if source is None or source == self.sources.get(s.name):
                continue
            primary = sim.server(source)
            errant = sorted({t.gtid for t in s.applied} - held(primary))
            if errant and accepts_writes(primary) and not ledger.overrides and not ledger.chose(s.name):
                found.append(Violation("mariadb.rejoin-keeps-errant",
                                       f"{s.name} was made a replica of {primary.name}, which lacks its transaction(s) "
                                       f"{', '.join(errant[:4])}: they are lost to the cluster; no check was overridden"))
        return found

    def at_end(self, model: Any, ledger: Ledger, success: bool) -> list[Violation]:
        """Fencing by its outcome: after a successful run, whatever comes back takes no writes
        beside the primary."""
        if not success or ledger.overrides or model is None:
            return []
        back = revived(model)
        writable = [s.name for s in back.servers if accepts_writes(s)]
        if len(writable) <= 1:
            return []
        return [Violation("mariadb.fenced-by-outcome",
                          f"the run ended with success, but with every dead server restarted and every hung one awake, "
                          f"{len(writable)} servers accept writes: {', '.join(writable)}")]


PROMOTE = st.integers(0, 9).flatmap(lambda v: primary_lost() if v < 8 else failed_over())
REJOIN = st.integers(0, 9).flatmap(lambda v: failed_over() if v < 8 else primary_lost())


class MariaDBKit(Kit):
    kind = "mariadb"
    runbooks = ("mariadb-promote-survivor", "mariadb-rejoin")
    ops = ("kill", "hang", "revive")
    flaps = ("kill", "hang")

    def situations(self, runbook: str) -> st.SearchStrategy[Situation]:
        return REJOIN if runbook == "mariadb-rejoin" else PROMOTE

    def suggested(self, runbook: str, situation: Situation) -> st.SearchStrategy[list[WorldChange]]:
        hung = [s["name"] for s in situation.state["servers"] if s["hung"] and s["read_only"]]
        return st.just([]) if not hung else wakes(hung)

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
        return MariaDBWatch(runbook)

    def expect_done(self, runbook: str, start: Any) -> str | None:
        return rejoin_possible(start) if runbook == "mariadb-rejoin" else promotion_possible(start)

    def hosts(self, work: Path) -> dict[str, Any]:
        # Each member on a host of its own (the simulator answers the service and pid commands):
        # the fence's service and signal methods run, and reach a hung old primary.
        return {f"h{i + 1}": {"address": _member(i).address} for i in range(MOST)}

    def inventory(self, name: str, members: list[MemberSpec]) -> dict[str, Any]:
        cluster = super().inventory(name, members)
        for i, member in enumerate(cluster["members"]):
            member.update(host=f"h{i + 1}", pid_file="/run/mysqld/mysqld.pid")
        servers = {m.name: m.name for m in members}
        cluster["proxies"] = [{
            "name": PROXY, "api": {"socket": "/run/haproxy/admin.sock"},
            "frontend": {"address": "127.0.1.10", "port": 3306},
            "backends": [{"name": WRITE, "servers": servers}, {"name": READ, "role": "read", "servers": servers}],
        }]
        return cluster

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
