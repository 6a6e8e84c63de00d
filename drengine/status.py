"""`drengine status`: ask every cluster of an inventory what is wrong, without guessing a runbook.

This module owns the shape of an answer (`ClusterStatus`: one row per member, a verdict in
plain words with its evidence, and the runbook that applies with the exact command to plan
it) and the fleet view: every cluster probed at once, each within its own timeouts, so the
whole inventory answers in about one timeout whatever the number of clusters.

What a datastore's observation *means* lives beside its connector, in
`drengine/datastores/<kind>/status.py` (`assess(cluster, backend) -> Reading`): adding a
datastore stays one folder. Probing is read-only: a simulated cluster is read from a copy of
its state, so `status` never changes a simulation either.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from drengine.clock import SYSTEM, Clock
from drengine.errors import DrengineError, InputError
from drengine.inventory import Cluster, Inventory
from drengine.ledger_check import OpenChange

# Opening a cluster's connector (its client library imported, a simulator started) before its
# probe budget starts: seconds on a quiet machine, far more on a loaded one.
OPEN_SECONDS = 20.0


class MemberState(str, Enum):
    REACHABLE = "reachable"
    DEAD = "dead"  # nothing listens: the process is not running (connection refused)
    HUNG = "hung"  # accepted the connection, then no answer within the read timeout
    UNREACHABLE = "unreachable"  # no TCP answer or another error: alive or not, we cannot tell
    ABSENT = "absent"  # the cluster itself says the member is not part of it
    UNKNOWN = "unknown"  # not probed (e.g. the whole cluster did not answer)


class Verdict(str, Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"  # serving, with less redundancy or a member needing attention
    DOWN = "down"  # not serving (no primary, no quorum, I/O blocked, red)
    SPLIT = "split"  # two sides each believe they serve: act before writes diverge further
    UNKNOWN = "unknown"  # the cluster could not be asked

    @property
    def needs_action(self) -> bool:
        return self is not Verdict.HEALTHY


class Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class MemberStatus(Model):
    name: str
    role: str = ""
    state: MemberState
    error: str = ""  # in words, when not reachable
    position: str = ""  # GTID, seqno, optime, PG count, shard count: what "how far" means here
    lag: str = ""
    note: str = ""


class ProxyStatus(Model):
    """Where a proxy in front of the cluster sends traffic (filled by datastores whose
    inventory declares proxies)."""

    name: str
    state: str
    points_to: str = ""
    error: str = ""


class Advice(Model):
    """A runbook that applies, why, and the exact command to plan it (or a plain next step)."""

    why: str
    runbook: str | None = None
    command: str = ""
    # Inputs of the runbook that only the operator can choose for this verdict: NAME -> what to
    # give. A recovery is not planned or run on the runbook's defaults while one is missing.
    inputs: dict[str, str] = Field(default_factory=dict)


class Reading(Model):
    """What a datastore's `assess` makes of one observation."""

    verdict: Verdict
    headline: str  # one sentence: what is wrong, in plain words
    evidence: list[str] = Field(default_factory=list)
    members: list[MemberStatus] = Field(default_factory=list)
    proxies: list[ProxyStatus] = Field(default_factory=list)
    advice: list[Advice] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)  # cluster-wide figures (health, PG states, shards)


class ClusterStatus(Model):
    cluster: str
    kind: str
    simulated: str | None = None  # the scenario, for a simulated cluster
    kept_state: bool = False  # a simulated cluster read as runs left it (not its scenario afresh)
    verdict: Verdict
    headline: str
    evidence: list[str] = Field(default_factory=list)
    facts: list[str] = Field(default_factory=list)
    members: list[MemberStatus] = Field(default_factory=list)
    proxies: list[ProxyStatus] = Field(default_factory=list)
    advice: list[Advice] = Field(default_factory=list)
    runs_registry: str = ""
    seconds: float = 0.0
    bad_input: str = ""  # the inventory entry itself is wrong (unknown scenario, unreadable secret): exit 2
    changes: list[OpenChange] = Field(default_factory=list)  # the change ledger's open entries, checked
    changes_problem: str = ""  # why the ledger could not be read

    @property
    def needs_action(self) -> bool:
        """Not healthy, or a change left open past its expected undo time."""
        return self.verdict.needs_action or any(c.overdue for c in self.changes)


class FleetStatus(Model):
    inventory: str
    clusters: list[ClusterStatus]
    seconds: float
    _probes: list[threading.Thread] = PrivateAttr(default_factory=list)

    @property
    def needs_action(self) -> bool:
        return any(c.needs_action for c in self.clusters)

    @property
    def bad_input(self) -> bool:
        return any(c.bad_input for c in self.clusters)

    def wait_closed(self, timeout: float) -> None:
        """Let the probes close their connections (after the answer was shown): a caller that
        goes on at once, e.g. to stop a server, must not leave half-closed connections behind."""
        deadline = time.monotonic() + timeout
        for probe in self._probes:
            probe.join(max(deadline - time.monotonic(), 0.0))


# -- helpers for the datastores' status modules ----------------------------------------------------


def classify_error(error: str) -> MemberState:
    """Read a connector's error text: refused means dead, a read timeout means hung."""
    low = error.lower()
    if "no answer within" in low or "timed out" in low or "timeout" in low or "hung" in low:
        return MemberState.HUNG
    if "refused" in low or "(111)" in low:
        return MemberState.DEAD
    return MemberState.UNREACHABLE


def state_words(state: MemberState) -> str:
    return {
        MemberState.DEAD: "dead (nothing listens: the process is not running)",
        MemberState.HUNG: "hung (accepts connections, answers nothing)",
        MemberState.UNREACHABLE: "unreachable (alive or not: cannot tell from here)",
        MemberState.ABSENT: "not part of the cluster",
        MemberState.UNKNOWN: "not probed",
        MemberState.REACHABLE: "reachable",
    }[state]


# What an error text already says about each state: the state's own explanation is then left
# out, so that a row never reads "dead (nothing listens ...): ... nothing listens on the port".
_SAID_BY_ERROR = {
    MemberState.DEAD: ("refused", "nothing listens", "not running"),
    MemberState.HUNG: ("no answer", "timed out", "timeout", "answers nothing"),
    MemberState.UNREACHABLE: ("unreachable", "no route", "cannot tell"),
}


def down_words(state: MemberState, error: str | None) -> str:
    """A member that does not answer, in one phrase: its state, then the error in its own words;
    the state's explanation only where the error does not already give it."""
    if not error:
        return state_words(state)
    if any(words in error.lower() for words in _SAID_BY_ERROR.get(state, ())):
        return f"{state.value}: {error}"
    return f"{state_words(state)}: {error}"


def plan_command(runbook: str, inventory: str, cluster: str, *extra: str) -> str:
    return " ".join(shlex.quote(p) for p in ("drengine", "plan", runbook, "-i", inventory, "-c", cluster, *extra))


# -- probing ---------------------------------------------------------------------------------------


def budget(cluster: Cluster) -> float:
    """The probe's budget once the connector is open: the connectors bound each probe by the
    connect and read timeouts themselves; this is the backstop for one that does not return."""
    return cluster.timeouts.backstop


def budget_words(cluster: Cluster) -> str:
    t = cluster.timeouts
    return f"{budget(cluster):g} s, the probe's budget (2 x (connect {t.connect:g} s + read {t.read:g} s) + 1 s)"


def load_words() -> str:
    """The machine's load, when it is busier than its cores: a late answer may be drengine's own."""
    try:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
    except OSError:
        return ""
    return f"; this machine is loaded (load average {load:.1f} on {cores} core(s))" if load > cores else ""


Assess = Callable[[Cluster, Any], Reading]


def _assessor(kind: str) -> Assess:
    from drengine.datastores import datastore

    store = datastore(kind)
    if store.status is None:
        raise InputError(f"`drengine status` does not know how to read a {kind} cluster yet")
    assess: Assess = store.load(store.status)
    return assess


def open_read_only(cluster: Cluster, inventory: Inventory, scratch: Path, clock: Clock = SYSTEM) -> Any:
    """The cluster's backend, for looking only. A simulated cluster is opened on a copy of its
    state (what the runs left), so a status (or a site's goal check) never moves a simulation on
    (runs and drills own it)."""
    from drengine.backends import open_backend

    return open_backend(cluster, inventory, scratch, clock, private=True)


def _finish(cluster: Cluster, inventory: Inventory, reading: Reading, started: float) -> ClusterStatus:
    advice = [a if a.command or a.runbook is None else
              a.model_copy(update={"command": plan_command(a.runbook, inventory.path, cluster.name,
                                                           *(w for n in a.inputs for w in ("--input", f"{n}=VALUE")))})
              for a in reading.advice]
    return ClusterStatus(
        cluster=cluster.name, kind=cluster.kind,
        simulated=cluster.simulated.scenario if cluster.simulated else None,
        kept_state=cluster.simulated is not None and _kept(cluster, inventory),
        verdict=reading.verdict, headline=reading.headline, evidence=reading.evidence, facts=reading.facts,
        members=reading.members, proxies=reading.proxies, advice=advice,
        runs_registry=registry_words(cluster, inventory), seconds=round(time.monotonic() - started, 3),
    )


def _kept(cluster: Cluster, inventory: Inventory) -> bool:
    from drengine.backends import simulated_state_file

    return simulated_state_file(cluster, inventory).exists()


def _unanswered(cluster: Cluster, inventory: Inventory, why: str, started: float, advice: str = "") -> ClusterStatus:
    members = [MemberStatus(name=m.name, role=m.role or "", state=MemberState.UNKNOWN, error=why) for m in cluster.members]
    reading = Reading(verdict=Verdict.UNKNOWN, headline=f"the cluster could not be asked: {why}", members=members,
                      advice=[Advice(why=advice or "check that drengine can reach the members (network, credentials, "
                                                   "the inventory's addresses), then ask again")])
    return _finish(cluster, inventory, reading, started)


def probe_cluster(cluster: Cluster, inventory: Inventory, done: Callable[[ClusterStatus], None] | None = None,
                  opened: Callable[[], None] | None = None) -> ClusterStatus:
    """Open, observe, interpret, close. `done` is told the answer before the backend is closed
    (closing a connector may wait on a hung member; nobody needs to wait for that); `opened`,
    when the connector is open and the probe starts."""
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f"drengine-status-{cluster.name}-"))
    backend = None
    try:
        try:
            assess = _assessor(cluster.kind)
            backend = open_read_only(cluster, inventory, scratch)
            if opened is not None:
                opened()
            status = _finish(cluster, inventory, assess(cluster, backend), started)
        except InputError:
            raise
        except DrengineError as exc:
            status = _unanswered(cluster, inventory, str(exc), started)
        status = with_changes(status, cluster, inventory, backend if status.verdict is not Verdict.UNKNOWN else None)
        if done is not None:
            done(status)
        return status
    finally:
        if backend is not None:
            # The answer is given; a failing close changes nothing about it.
            with contextlib.suppress(Exception):
                backend.close()
        shutil.rmtree(scratch, ignore_errors=True)


def probe_fleet(inventory: Inventory, names: Sequence[str] | None = None,
                clock: Callable[[], float] = time.monotonic) -> FleetStatus:
    """Every cluster at once, each on its own thread and within its own budget: the fleet
    answers in about the slowest cluster's timeout, not in the sum of them. A cluster's budget
    starts when its connector is open (opening has its own, OPEN_SECONDS), so that a machine
    busy importing client libraries and starting simulators does not eat the probes' time."""
    clusters = [inventory.cluster(n) for n in names] if names else list(inventory.clusters.values())
    started = clock()
    futures: dict[str, Future[ClusterStatus]] = {}
    opened: dict[str, list[float]] = {}
    ready: dict[str, threading.Event] = {}
    probes: list[threading.Thread] = []
    for cluster in clusters:
        fut: Future[ClusterStatus] = Future()
        futures[cluster.name] = fut
        at, event = opened.setdefault(cluster.name, []), ready.setdefault(cluster.name, threading.Event())

        def open_now(at: list[float] = at, event: threading.Event = event) -> None:
            at.append(clock())
            event.set()

        # Daemon threads: a member that hangs past every timeout must not keep drengine from exiting.
        probe = threading.Thread(target=_probe_into, args=(cluster, inventory, fut, open_now), daemon=True,
                                 name=f"status-{cluster.name}")
        probe.start()
        probes.append(probe)
    answers = [_wait_for(cluster, inventory, futures[cluster.name], ready[cluster.name], opened[cluster.name],
                         started, clock) for cluster in clusters]
    fleet = FleetStatus(inventory=inventory.path, clusters=answers, seconds=round(clock() - started, 3))
    fleet._probes = probes
    return fleet


def _wait_for(cluster: Cluster, inventory: Inventory, fut: Future[ClusterStatus], ready: threading.Event,
              opened: list[float], started: float, clock: Callable[[], float]) -> ClusterStatus:
    """One cluster's answer, or which budget ran out: opening its connector, or its probe."""
    while not fut.done() and not ready.wait(timeout=min(0.05, max(started + OPEN_SECONDS - clock(), 0.0))):
        if clock() >= started + OPEN_SECONDS:
            return _unanswered(cluster, inventory, f"its connector did not open within {OPEN_SECONDS:g} s (the client "
                                                   f"library or simulator starting){load_words()}", started,
                               advice="ask again when the machine is less busy; nothing was asked of the members yet")
    remaining = (opened[0] if opened else clock()) + budget(cluster) - clock()
    try:
        return fut.result(timeout=max(remaining, 0.0))
    except TimeoutError:
        return _unanswered(cluster, inventory, f"no answer within {budget_words(cluster)}, counted from when its "
                                               f"connector was open{load_words()}", started,
                           advice=f"the probe's budget ran out, not a member's timeout: ask again (when this machine "
                                  f"is less busy), or raise timeouts.read of {cluster.name} in the inventory "
                                  f"(now {cluster.timeouts.read:g} s) if its members answer slowly")


def _probe_into(cluster: Cluster, inventory: Inventory, fut: Future[ClusterStatus],
                opened: Callable[[], None] | None = None) -> None:
    def answer(status: ClusterStatus) -> None:
        if not fut.done():
            fut.set_result(status)

    try:
        probe_cluster(cluster, inventory, answer, opened)
    except InputError as exc:
        # Bad input (an unknown scenario, an unreadable secret) in one cluster's entry: the others
        # are still shown, and the exit code says the inventory needs fixing.
        status = _unanswered(cluster, inventory, f"bad input: {exc}", time.monotonic())
        answer(status.model_copy(update={"bad_input": str(exc), "headline": f"cannot be asked: {exc}"}))
    except Exception as exc:  # noqa: BLE001 - one cluster's bug must not hide the others' answers
        answer(_unanswered(cluster, inventory, f"internal error: {type(exc).__name__}: {exc}", time.monotonic()))


def with_changes(status: ClusterStatus, cluster: Cluster, inventory: Inventory, backend: Any) -> ClusterStatus:
    """The cluster's open change-ledger entries, each checked against the cluster (when it answered)."""
    from drengine.ledger_check import check_open, open_entries_of

    entries, problem = open_entries_of(inventory, cluster.name)
    if not entries and not problem:
        return status
    return status.model_copy(update={"changes": check_open(cluster, inventory, backend, entries),
                                     "changes_problem": problem})


# -- runs in progress ------------------------------------------------------------------------------


def registry_words(cluster: Cluster, inventory: Inventory) -> str:
    """What the run registry says about the cluster: the run holding its lock (and where it is),
    and an interrupted run that can be resumed. Read from the cluster's lock backend (a local
    file, or etcd for a team), so every machine sees the same."""
    from drengine.lock.registry import RunStatus, cluster_runs

    runs = cluster_runs(inventory, cluster.name)
    if runs.problem:
        return f"the run registry ({runs.backend}, {runs.where}) could not be read: {runs.problem}"
    words = []
    if runs.holder is not None:
        words.append(f"{runs.holder.describe()} holds the cluster lock")
    for view in runs.runs:
        run = view.run
        if view.holds_lock:
            where = f"waiting at gate {run.gate}" if run.gate else f"at step {run.step or '?'}"
            words.append(f"{run.runbook} ({run.mode}) by {run.user}@{run.host} is {where}")
        elif view.status in (RunStatus.INTERRUPTED, RunStatus.STOPPED, RunStatus.FAILED_AFTER_CHANGE):
            words.append(f"run {run.run_id} ({run.runbook}) is {view.status.value}: "
                         f"drengine run --resume {run.run_dir}")
            break  # the newest one is enough here; `drengine runs list -i` shows them all
    return "; ".join(words)
