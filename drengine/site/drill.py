"""`drengine drill site --lose-host HOST`: lose a host and everything on it at once, recover the
site unattended, measure.

Every member the inventory places on HOST (`host:`), in every cluster, is killed (or hung)
through its cluster's backend (`FaultTarget`, as a cluster drill's kit does). Before that each
cluster of the site must be healthy (its drill kit's health check) and takes a few canary writes.
Then the site run (drengine/site/run.py) recovers every broken cluster, dependencies first,
under the drill policy; as each cluster's turn ends, a canary is written to it. Measured per
cluster: the recovery time (the fault to its first acknowledged canary write after it) and the
lost writes (canaries acknowledged before the fault that cannot be read back); the site's
recovery time is the longest. Everything goes into the drill's journal (`DRILL_DIR/journal.jsonl`);
the site run and each cluster's run keep their own under `DRILL_DIR/site/`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from drengine.clock import wait_until
from drengine.drill import Canaries, DrillKit, count_canaries, kit_for
from drengine.errors import DrengineError, InputError
from drengine.gates import DrillPolicy, operator_name
from drengine.inventory import Cluster, Inventory
from drengine.journal import Entry, Event, JournalWriter
from drengine.objectives import Judgement, Objectives, judge, missed, missed_summary
from drengine.runbook import RunbookSearch
from drengine.site.run import SiteOutcome, SiteRequest, new_site_id, run_site, with_site_state
from drengine.steps import Mode

FAULTS = ("kill", "hang")


@dataclass
class SiteDrillRequest:
    inventory: Inventory
    host: str
    fault: str = "kill"
    drill_dir: Path | None = None
    runs_root: Path = Path("runs")
    objectives: Objectives = field(default_factory=Objectives)
    recovery_timeout: float = 120.0
    settle_timeout: float = 90.0
    settle_quiet: float = 5.0  # seconds a cluster's reading must stay the same before the site run starts
    canary_interval: float = 0.5
    argv: list[str] = field(default_factory=list)
    on_event: Callable[[Entry], None] | None = None
    runbooks: RunbookSearch | None = None


@dataclass
class ClusterMeasure:
    cluster: str
    members: list[str]  # the members the host carried
    rto: float | None = None
    lost: int | None = None
    judgements: list[Judgement] = field(default_factory=list)
    canaries: Canaries = field(default_factory=Canaries)


@dataclass
class SiteDrillOutcome:
    drill_dir: Path
    passed: bool
    summary: str
    site: SiteOutcome | None
    measures: dict[str, ClusterMeasure]
    site_rto: float | None


class _Backends:
    """A cluster's backend, opened for one look and closed again: the site's runs open their own
    on the same state (a simulator's state file; a real cluster's connections)."""

    def __init__(self, inventory: Inventory, scratch: Path) -> None:
        self.inventory = inventory
        self.scratch = scratch

    def use(self, cluster: Cluster, what: Callable[[Any], Any]) -> Any:
        from drengine.backends import open_backend

        backend = open_backend(cluster, self.inventory, self.scratch)
        try:
            return what(backend)
        finally:
            backend.close()


def _check(request: SiteDrillRequest) -> dict[str, list[str]]:
    if request.fault not in FAULTS:
        raise InputError(f"--fault {request.fault}: a lost host's members are killed or hung; expected one of {FAULTS}")
    victims: dict[str, list[str]] = {}
    for cluster, member in request.inventory.members_on(request.host):
        victims.setdefault(cluster.name, []).append(member.name)
    if not victims:
        raise InputError(f"{request.inventory.path}: no member of any cluster runs on host {request.host} "
                         f"(members name their host with `host:`); losing it would break nothing")
    for name in request.inventory.clusters:
        cluster = request.inventory.cluster(name)
        if not cluster.drill_target:
            raise InputError(f"{request.inventory.path}: cluster {name} is not marked as a drill target; a site drill "
                             f"breaks the site on purpose, so every cluster of it must say `drill_target: true` "
                             f"(only for labs and staging)")
    return victims


def run_site_drill(request: SiteDrillRequest) -> SiteDrillOutcome:
    victims = _check(request)
    drill_dir = request.drill_dir or (request.runs_root / new_site_id().replace("-site-", "-drill-site-"))
    if (drill_dir / "journal.jsonl").exists():
        raise InputError(f"{drill_dir} already holds a journal; choose another --run-dir")
    site_dir = drill_dir / "site"
    shared = with_site_state(request.inventory, site_dir)
    kits = {name: kit_for(c.kind) for name, c in shared.clusters.items()}
    journal = JournalWriter(drill_dir)
    if request.on_event is not None:
        journal.after_append = request.on_event
    try:
        return _Drill(request, shared, kits, journal, victims, site_dir).run()
    finally:
        journal.close()


class _Drill:
    def __init__(self, request: SiteDrillRequest, inventory: Inventory, kits: dict[str, DrillKit],
                 journal: JournalWriter, victims: dict[str, list[str]], site_dir: Path) -> None:
        self.request = request
        self.inventory = inventory
        self.kits = kits
        self.journal = journal
        self.victims = victims
        self.site_dir = site_dir
        self.backends = _Backends(inventory, journal.run_dir)
        self.measures = {name: ClusterMeasure(name, victims.get(name, [])) for name in inventory.clusters}
        self.fault_at = 0.0

    def _canary(self, name: str) -> bool:
        cluster, kit, measure = self.inventory.cluster(name), self.kits[name], self.measures[name]
        key = measure.canaries.next_key()

        def write(backend: Any) -> bool:
            try:
                return bool(kit.write_canary(cluster, backend, key))
            except Exception:  # noqa: BLE001 - a failed canary is data, not an error
                return False

        try:
            ok = bool(self.backends.use(cluster, write))
        except DrengineError:
            ok = False
        measure.canaries.record(key, ok, time.time())
        return ok

    def run(self) -> SiteDrillOutcome:
        request = self.request
        self.journal.append(Event.RUN_STARTED, run_id=self.journal.run_dir.name, mode="drill-site", runbook="site",
                            inventory=os.path.realpath(self.inventory.path), cluster=",".join(self.inventory.clusters),
                            kind="site", host=socket.gethostname(), operator=operator_name(), pid=os.getpid(),
                            argv=request.argv, lost_host=request.host, fault=request.fault,
                            objectives=request.objectives.model_dump())
        try:
            self._before()
            self._inject()
            self._settle()
            site = self._recover()
            return self._judge(site)
        except BaseException as exc:
            if not self.journal.finished:
                self.journal.append(Event.RUN_FINISHED, end="failed", success=False,
                                    summary=f"the drill stopped: {type(exc).__name__}: {exc}")
            if isinstance(exc, DrengineError):
                exc.run_dir = self.journal.run_dir
            raise

    def _before(self) -> None:
        for name, cluster in self.inventory.clusters.items():
            kit = self.kits[name]
            problems = self.backends.use(cluster, partial(kit.health, cluster))
            self.journal.append(Event.NOTE, cluster=name, healthy=not problems,
                                text=f"health check of {name} before the fault: "
                                     + ("healthy" if not problems else "; ".join(problems)))
            if problems:
                raise InputError(f"drill refused: cluster {name} is not healthy before the fault "
                                 f"({'; '.join(problems)}); a drill measures recovery from a known good state")
            for _ in range(3):
                self._canary(name)

    def _inject(self) -> None:
        for name, members in self.victims.items():
            cluster = self.inventory.cluster(name)
            for member in members:
                text = self.backends.use(cluster, partial(_fault, self.request.fault, member))
                self.journal.append(Event.FAULT_INJECTED, cluster=name, fault=f"lose-host-{self.request.fault}",
                                    members=[member], host=self.request.host, at=time.time(),
                                    text=f"host {self.request.host} lost: {text}")
        self.fault_at = time.time()

    def _settle(self) -> None:
        """Wait until each cluster the host carried shows the loss and its reading has stopped
        changing: its status needs action, with the same verdict and the same runbook advised, for
        `settle_quiet` seconds. The site run must meet the failure, not a cluster still catching
        up with it (a real Galera survivor stays Primary until it suspects the others; a real
        Ceph notices a dead OSD after its heartbeat grace). On each cluster's own clock: a
        simulated one costs no real time."""
        from drengine.engine import cluster_clock

        for name in self.victims:
            cluster = self.inventory.cluster(name)
            clock = cluster_clock(cluster)
            started = clock.now()
            watch = _Settling(cluster, self.inventory, clock, self.request.settle_quiet)
            shown = wait_until(watch.settled, self.request.settle_timeout, interval=1.0, clock=clock)
            seconds = round(clock.now() - started, 3)
            self.journal.append(Event.NOTE, cluster=name, settled_seconds=seconds if shown else None,
                                text=(f"{name} shows the loss after {seconds:g} s: {watch.reading}" if shown else
                                      f"{name} did not settle within {self.request.settle_timeout:g} s "
                                      f"(last: {watch.reading}); the site run goes on anyway"))

    def _recover(self) -> SiteOutcome | None:
        told = self.request.on_event

        def turn_ended(entry: Entry) -> None:
            """A cluster's turn ended: a canary tells when it takes writes again."""
            if entry.type is Event.SITE_CLUSTER and entry.data.get("phase") not in ("started", "resumed"):
                self._canary(str(entry.data["cluster"]))
            if told is not None:
                told(entry)

        try:
            return run_site(SiteRequest(
                inventory=self.request.inventory, gates=DrillPolicy(), mode=Mode.DRILL, site_dir=self.site_dir,
                parallel=4, argv=self.request.argv, runbooks=self.request.runbooks, on_event=turn_ended))
        except DrengineError as exc:
            self.journal.append(Event.NOTE, text=f"the site run stopped: {exc}")
            return None

    def _wait_for_writes(self, name: str) -> None:
        measure = self.measures[name]
        with measure.canaries.lock:
            done = any(t >= self.fault_at for _, t in measure.canaries.acked)
        if done:
            return
        simulated = self.inventory.cluster(name).simulated is not None
        if simulated:
            self._canary(name)
        else:
            wait_until(lambda: self._canary(name), self.request.recovery_timeout, interval=self.request.canary_interval)

    def _judge(self, site: SiteOutcome | None) -> SiteDrillOutcome:
        reasons = []
        for name, measure in self.measures.items():
            self._wait_for_writes(name)
            with measure.canaries.lock:
                after = [t for _, t in measure.canaries.acked if t >= self.fault_at]
                acked = [k for k, _ in measure.canaries.acked]
            recovered_at = min(after) if after else None
            cluster, kit = self.inventory.cluster(name), self.kits[name]
            try:
                present: set[str] | None = self.backends.use(cluster, partial(_read_back, kit, cluster, acked))
            except DrengineError as exc:
                present = None
                self.journal.append(Event.NOTE, cluster=name, text=f"the canaries of {name} could not be read: {exc}")
            count = count_canaries(measure.canaries, self.fault_at, recovered_at, present)
            measure.rto = None if recovered_at is None else round(recovered_at - self.fault_at, 3)
            measure.lost = None if present is None else len(count.lost)
            cluster_objectives = Objectives(lost_writes=self.request.objectives.lost_writes)
            measure.judgements = judge(measure.rto, measure.lost, cluster_objectives)
            self.journal.append(Event.MEASUREMENT, cluster=name, name="recovery_seconds", value=measure.rto, unit="s",
                                text=f"{name}: the host lost to its first acknowledged canary write",
                                members_lost=measure.members)
            self.journal.append(Event.MEASUREMENT, cluster=name, name="lost_writes", value=measure.lost,
                                unit="writes", text=f"{name}: acknowledged canaries missing after recovery",
                                lost=count.lost)
            if measure.rto is None:
                reasons.append(f"{name} took no write after the fault")
            if missed(measure.judgements):
                reasons.append(f"{name}: objective missed: {missed_summary(measure.judgements)}")
        if self.request.fault == "hang":
            self._wake()
        rtos = [m.rto for m in self.measures.values()]
        site_rto = None if any(r is None for r in rtos) else max(r for r in rtos if r is not None)
        site_judgement = judge(site_rto, None, Objectives(rto=self.request.objectives.rto))[0]
        self.journal.append(Event.MEASUREMENT, name="site_recovery_seconds", value=site_rto, unit="s",
                            text="the host lost to the last cluster taking writes again", judgement=site_judgement.text)
        if site_judgement.met is False:
            reasons.append(f"site: objective missed: {missed_summary([site_judgement])}")
        if site is None or not site.success:
            reasons.append("the site run did not recover every cluster"
                           + (f": {site.summary}" if site is not None else " (it stopped; see its journal)"))
        passed = not reasons
        figures = ", ".join(f"{n} {_shown(m.rto, 's')} / lost {_shown(m.lost, '')}" for n, m in self.measures.items())
        summary = (f"site recovery {_shown(site_rto, 's')}"
                   + (f" (objective {self.request.objectives.rto:g} s)" if self.request.objectives.rto else "")
                   + f"; per cluster: {figures}")
        summary = summary if passed else "; ".join(reasons) + f" ({summary})"
        self.journal.append(Event.DRILL_VERDICT, verdict="passed" if passed else "failed", reasons=reasons,
                            site_rto=site_rto, text="PASSED" if passed else "FAILED: " + "; ".join(reasons),
                            clusters={n: {"rto": m.rto, "lost": m.lost, "members_lost": m.members,
                                          "objectives": [j.as_dict() for j in m.judgements]}
                                      for n, m in self.measures.items()})
        self.journal.append(Event.RUN_FINISHED, end="passed" if passed else "failed", success=passed, summary=summary)
        return SiteDrillOutcome(self.journal.run_dir, passed, summary, site, self.measures, site_rto)

    def _wake(self) -> None:
        """A hung member is woken after the measurements (SIGCONT), as a cluster drill does: what it
        does then is the recovery's business, which the check of the site shows."""
        for name, members in self.victims.items():
            cluster = self.inventory.cluster(name)
            for member in members:
                text = self.backends.use(cluster, partial(_fault, "resume", member))
                self.journal.append(Event.NOTE, cluster=name, text=f"after the drill: {text}")


class _Settling:
    """A cluster's readings while the loss sinks in: settled once it needs action and the same
    verdict and advised runbook have held for `quiet` seconds."""

    def __init__(self, cluster: Cluster, inventory: Inventory, clock: Any, quiet: float) -> None:
        self.cluster, self.inventory, self.clock, self.quiet = cluster, inventory, clock, quiet
        self.since: float | None = None
        self.key: tuple[str, str | None] | None = None
        self.reading = "not read yet"

    def settled(self) -> bool:
        from drengine.status import probe_cluster

        status = probe_cluster(self.cluster, self.inventory)
        runbook = next((a.runbook for a in status.advice if a.runbook), None)
        self.reading = f"{status.verdict.value}: {status.headline}"
        key = (status.verdict.value, runbook)
        if not status.verdict.needs_action:
            self.key = self.since = None
            return False
        if key != self.key:
            self.key, self.since = key, self.clock.now()
        return self.since is not None and self.clock.now() - self.since >= self.quiet


def _fault(operation: str, member: str, backend: Any) -> str:
    """A backend's fault operation (`FaultTarget`: kill, hang, resume) on one member."""
    return str(getattr(backend, operation)(member))


def _read_back(kit: DrillKit, cluster: Cluster, keys: list[str], backend: Any) -> set[str]:
    return kit.read_canaries(cluster, backend, keys)


def _shown(value: float | int | None, unit: str) -> str:
    return "never" if value is None else f"{value:g}{' ' + unit if unit else ''}"
