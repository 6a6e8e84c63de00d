"""Site scenarios over the simulators: two or three simulated clusters (MariaDB, Ceph, Galera)
with generated dependencies, their members spread over three hosts, one or two hosts lost at
once (every member on them killed, or hung). The site is recovered unattended by the production
`run_site` (every gate approved, as `site run --yes --accept-data-loss` would), and judged by
two invariants computed from the simulators' own state through each datastore's explore kit
(`Kit.goal`, written apart from the runbooks' goal actions):

  site.dependency-first   when a cluster's run starts, every cluster it depends on holds its
                          goal in the simulator (the goal of the runbook it ran; a cluster that
                          ran none: the goal of its datastore's first runbook)
  site.done-means-done    a site run that says DONE leaves every cluster's goal holding

The explorer configures nothing inside the site run: it writes an inventory, injects the losses
through each backend's fault operations (`FaultTarget`), and watches the runs' journals.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drengine.errors import DrengineError
from drengine.explore.kit import Ledger, Violation, kit_for
from drengine.journal import Entry, Event, read_entries

HOSTS = ("h1", "h2", "h3")
KINDS = ("ceph", "mariadb", "galera")


@dataclass(frozen=True)
class SiteScenario:
    seed: int
    clusters: tuple[tuple[str, str], ...]  # (name, kind), in the inventory's order
    depends: dict[str, list[str]]
    placement: dict[str, tuple[str, ...]]  # cluster -> the host of each of its members, in order
    lost: tuple[str, ...]
    fault: str  # kill | hang
    parallel: int

    def words(self) -> str:
        deps = "; ".join(f"{n} depends on {', '.join(d)}" for n, d in self.depends.items() if d) or "no dependencies"
        return (f"seed {self.seed}: {', '.join(f'{n} ({k})' for n, k in self.clusters)}; {deps}; "
                f"{self.fault} every member on {', '.join(self.lost)}; parallel {self.parallel}")


def generate(seed: int) -> SiteScenario:
    rng = random.Random(seed)
    kinds = rng.sample(KINDS, rng.choice((2, 3)))
    names = [f"site-{kind}" for kind in kinds]
    depends: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        depends[name] = [earlier for earlier in names[:i] if rng.random() < 0.6]
    placement = {name: tuple(HOSTS[(i + rng.randrange(3)) % 3] for i in range(3)) for name in names}
    lost = tuple(sorted(rng.sample(HOSTS, 1 if rng.random() < 0.75 else 2)))
    return SiteScenario(seed, tuple(zip(names, kinds, strict=True)), depends, placement, lost,
                        "kill" if rng.random() < 0.8 else "hang", rng.choice((1, 1, 4)))


def _members(kind: str, hosts: tuple[str, ...]) -> list[dict[str, Any]]:
    address = {h: f"127.0.4.{11 + i}" for i, h in enumerate(HOSTS)}
    if kind == "ceph":
        mons = [{"name": f"mon.{c}", "address": address[h], "port": 3300 + i, "role": "mon", "host": h}
                for i, (c, h) in enumerate(zip("abc", hosts, strict=True))]
        osds = [{"name": f"osd.{i}", "address": address[h], "role": "osd", "host": h} for i, h in enumerate(hosts)]
        return mons + osds
    prefix, port = ("db", 3306) if kind == "mariadb" else ("g", 3307)
    return [{"name": f"{prefix}{i + 1}", "address": address[h], "port": port, "host": h,
             "pid_file": "/run/mysqld/mysqld.pid", "data_dir": "/var/lib/mysql"} for i, h in enumerate(hosts)]


def inventory(scenario: SiteScenario) -> dict[str, Any]:
    clusters = {}
    for name, kind in scenario.clusters:
        clusters[name] = {"kind": kind, "simulated": {"scenario": "healthy"}, "drill_target": True,
                          "timeouts": {"connect": 1, "read": 2, "catch_up": 5},
                          "depends_on": scenario.depends[name], "members": _members(kind, scenario.placement[name])}
    return {"hosts": {h: {"address": f"127.0.4.{11 + i}"} for i, h in enumerate(HOSTS)}, "clusters": clusters}


@dataclass
class SiteFinding:
    scenario: SiteScenario
    violations: list[Violation] = field(default_factory=list)
    verdict: str = ""  # done | incomplete | stopped: ...
    summary: str = ""


class _Oracle:
    """The clusters' goals, from the simulators' state files (what is true, not what the runs say)."""

    def __init__(self, scenario: SiteScenario, site_dir: Path) -> None:
        self.kinds = dict(scenario.clusters)
        self.site_dir = site_dir

    def goal(self, cluster: str) -> str | None:
        """None when the cluster's goal holds in its simulator now, else why not."""
        kit = kit_for(self.kinds[cluster])
        state = self.site_dir / "state" / f"{cluster}.json"
        model = kit.load_text(state.read_text()) if state.is_file() else None
        if model is None:
            return None  # never opened: the scenario's healthy cluster, untouched
        runs = sorted(self.site_dir.glob(f"{cluster}*/journal.jsonl"))
        entries = [e for path in runs for e in read_entries(path)]
        started = [e.data for e in entries if e.type is Event.RUN_STARTED]
        runbook = str(started[-1]["runbook"]) if started else kit.runbooks[0]
        watch = kit.watch(runbook)
        ledger = getattr(watch, "ledger", None)
        if isinstance(ledger, Ledger):
            for entry in entries:
                ledger.see(entry)
        return kit.goal(runbook, model, watch)


def explore_site(scenario: SiteScenario, work: Path) -> SiteFinding:
    """One scenario: the site written, the hosts lost, the site recovered and judged."""
    from drengine.backends import open_backend
    from drengine.gates import FlagPolicy
    from drengine.inventory import load_inventory
    from drengine.site.run import SiteRequest, run_site, with_site_state

    work.mkdir(parents=True, exist_ok=True)
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(inventory(scenario), sort_keys=False))
    site_dir = work / "site"
    inv = load_inventory(path)
    shared = with_site_state(inv, site_dir)
    for host in scenario.lost:
        for cluster, member in shared.members_on(host):
            backend = open_backend(shared.cluster(cluster.name), shared, work)
            try:
                getattr(backend, scenario.fault)(member.name)
            finally:
                backend.close()
    oracle = _Oracle(scenario, site_dir)
    finding = SiteFinding(scenario)

    def listeners(cluster: str) -> list[Any]:
        def on_entry(entry: Entry) -> None:
            if entry.type is not Event.RUN_STARTED:
                return
            for dep in scenario.depends[cluster]:
                why = oracle.goal(dep)
                if why is not None:
                    finding.violations.append(Violation(
                        "site.dependency-first",
                        f"the recovery of {cluster} started while {dep}, which it depends on, does not hold: {why}",
                        f"run_started of {cluster}"))
        return [on_entry]

    try:
        outcome = run_site(SiteRequest(inventory=inv, gates=FlagPolicy(yes=True, accept_data_loss=True),
                                       site_dir=site_dir, parallel=scenario.parallel, listeners=listeners))
    except DrengineError as exc:
        finding.verdict, finding.summary = "stopped", str(exc)
        return finding
    finding.verdict, finding.summary = outcome.end, outcome.summary
    if outcome.success:
        for name, _ in scenario.clusters:
            why = oracle.goal(name)
            if why is not None:
                finding.violations.append(Violation(
                    "site.done-means-done", f"the site run said DONE while the goal of {name} fails: {why}",
                    "run_finished of the site"))
    return finding


def explore_sites(seeds: range, work: Path) -> list[SiteFinding]:
    return [explore_site(generate(seed), work / f"seed-{seed}") for seed in seeds]


def explore_command(count: int, seeds: list[int], budget: float | None, out_dir: Path) -> tuple[list[str], bool]:
    """`drengine explore --site`: `count` scenarios per seed (scenario seed: SEED * 100000 + i),
    each in its own directory under `out_dir`; the directories of scenarios with a violation are
    kept, the others removed. Lines to print, and whether nothing was violated."""
    import shutil
    import time

    lines: list[str] = []
    verdicts: dict[str, int] = {}
    bad = 0
    started = time.monotonic()
    for seed in seeds:
        for i in range(count):
            if budget is not None and time.monotonic() - started > budget:
                lines.append(f"budget of {budget:g} s spent")
                break
            scenario = generate(seed * 100000 + i)
            work = out_dir / f"site-{scenario.seed}"
            shutil.rmtree(work, ignore_errors=True)
            finding = explore_site(scenario, work)
            verdicts[finding.verdict] = verdicts.get(finding.verdict, 0) + 1
            if finding.violations:
                bad += 1
                lines.append(f"VIOLATION in {scenario.words()} (kept: {work})")
                lines += [f"  {v.line()}" for v in finding.violations]
            else:
                shutil.rmtree(work, ignore_errors=True)
    total = sum(verdicts.values())
    lines.append(f"{total} site scenario(s): " + ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
                 + f"; {bad} with a violation")
    return lines, bad == 0
