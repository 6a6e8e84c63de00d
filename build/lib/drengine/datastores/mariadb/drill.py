"""Drill kit for MariaDB replication: faults, health check and canaries (a row per canary in
drengine.canary). Canaries go through the first proxy's write frontend when the inventory
has one, as the application's writes do, so the recovery time is the application's; else
straight to the current primary. The kit is a value: it keeps nothing between calls; faults
are the backend's own operations (signals on the real hosts, the model's state in the
simulator), and what the drill must know afterwards is observed again."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from drengine.datastores.mariadb.connector import ClusterView, MariaDBAPI, Sql
from drengine.datastores.mysql_traffic import frontends, traffic_problems
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError, InputError
from drengine.inventory import Cluster

CANARY_DDL = [
    Sql("CREATE DATABASE IF NOT EXISTS drengine"),
    Sql("CREATE TABLE IF NOT EXISTS drengine.canary (id VARCHAR(64) PRIMARY KEY, written_at DOUBLE NOT NULL)"),
]
UNREPLICATED = 10
# How long a canary waits for an answer: an application that waits longer sees the outage later.
CANARY_TIMEOUT = 0.5

FAULTS = MappingProxyType({
    "kill-primary": Fault("kill-primary", "SIGKILL the primary's server process"),
    "hang-primary": Fault("hang-primary", "SIGSTOP the primary; it is woken (SIGCONT) after the runbook and nothing else "
                                          "is done to it: the runbook's fencing must leave one writable primary"),
    "lag-replica": Fault("lag-replica", "stop the last replica's IO thread, write canaries the others receive, "
                                        "then kill the primary: the lagging replica must not win and must catch up"),
    "cut-replication": Fault("cut-replication", f"stop every replica's IO thread, write {UNREPLICATED} canaries "
                                                f"only the primary holds, then kill it: exactly those are lost"),
})


def _primary(view: ClusterView) -> str | None:
    writable = [s.name for s in view.servers if s.is_writable_primary]
    return writable[0] if len(writable) == 1 else None


def canaries_through(cluster: Cluster) -> list[str]:
    """Where the canaries go, for the journal: the recovery time is measured there."""
    for proxy in cluster.proxies:
        if proxy.frontend is not None:
            return [f"canaries through proxy {proxy.name}'s write frontend {proxy.frontend.address}:{proxy.frontend.port}"]
    return ["canaries written on the writable primary (no proxy frontend in the inventory)"]


def _canary(key: str) -> Sql:
    return Sql("INSERT INTO drengine.canary (id, written_at) VALUES (%s, %s)", (key, round(time.time(), 3)))


@dataclass(frozen=True)
class MariaDBKit:
    faults: Mapping[str, Fault] = field(default_factory=lambda: FAULTS)

    def health(self, cluster: Cluster, backend: MariaDBAPI) -> list[str]:
        view = backend.observe()
        problems = [f"{s.name} unreachable ({s.error})" for s in view.servers if not s.reachable]
        primary = _primary(view)
        if primary is None:
            problems.append("expected exactly one writable primary")
            return problems
        head = view.server(primary)
        for s in view.servers:
            if s.name == primary or not s.reachable:
                continue
            follows = [ch for ch in s.channels if (ch.master_host, ch.master_port) == (head.address, head.port)]
            if not follows or follows[0].io_running != "Yes" or follows[0].sql_running != "Yes":
                problems.append(f"{s.name} does not replicate from {primary} with both threads running")
        if not problems:
            for sql in CANARY_DDL:
                backend.execute(primary, sql)
            problems += traffic_problems(backend, {primary})
        return problems

    def write_canary(self, cluster: Cluster, backend: MariaDBAPI, key: str) -> bool:
        try:
            through = frontends(cluster)
            if through:
                backend.through_frontend(through[0], [_canary(key)], read_timeout=CANARY_TIMEOUT)
                return True
            target = _primary(backend.observe())
            if target is None:
                return False
            backend.execute(target, _canary(key))
        except DrengineError:
            return False
        return True

    def read_canaries(self, cluster: Cluster, backend: MariaDBAPI, keys: Sequence[str] = ()) -> set[str]:
        target = _primary(backend.observe())
        if target is None:
            return set()
        rows = backend.query(target, Sql("SELECT id FROM drengine.canary"))
        return {str(r[0]) for r in rows}

    def inject(self, cluster: Cluster, backend: MariaDBAPI, fault: str) -> Injected:
        primary = _primary(backend.observe())
        if primary is None:
            raise InputError(
                "the drill found no single writable primary to inject the fault on (it was healthy a moment ago); "
                "check the cluster and run the drill again"
            )
        replicas = [m.name for m in cluster.members if m.name != primary]
        notes: list[str] = []
        acked: list[str] = []
        if fault in ("lag-replica", "cut-replication"):
            # Canaries acknowledged so far must be on the replicas before replication is cut,
            # or the loss would be larger than the known, deliberate one.
            pos = str(backend.query(primary, Sql("SELECT @@gtid_binlog_pos"))[0][0])
            for r in replicas:
                backend.query(r, Sql("SELECT MASTER_GTID_WAIT(%s, %s)", (pos, 10)), timeout=10)
            cut = replicas[-1:] if fault == "lag-replica" else replicas
            notes += [backend.cut_replication(r) for r in cut]
            for i in range(UNREPLICATED):
                key = f"canary-fault-{i:03d}"
                try:
                    backend.execute(primary, _canary(key))
                    acked.append(key)
                except DrengineError:
                    continue
            notes.append(f"{len(acked)} canaries written on {primary} after that")
        notes.append(backend.hang(primary) if fault == "hang-primary" else backend.kill(primary))
        notes += canaries_through(cluster)
        return Injected("; ".join(notes), acked, members=[primary])

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return ()

    def settled(self, cluster: Cluster, backend: MariaDBAPI, fault: str) -> bool:
        view = backend.observe()
        writable = [s for s in view.servers if s.is_writable_primary]
        receiving = [s for s in view.servers if s.reachable and any(ch.io_running == "Yes" for ch in s.channels)]
        return not writable and not receiving

    def bring_back(self, cluster: Cluster, backend: MariaDBAPI, fault: str, run_dir: Path) -> Restore | None:
        """Start every server that is down (the killed primary, or one the runbook fenced by
        stopping it), then mariadb-rejoin makes the returned ones replicas."""
        down = [s.name for s in backend.observe().servers if s.state == "down"]
        started = [f"started {name}: {backend.start(name)}" for name in down]
        return Restore("; ".join(started) or "nothing was down", "mariadb-rejoin")

    def cleanup(self, cluster: Cluster, backend: MariaDBAPI, fault: str) -> str | None:
        if fault != "hang-primary":
            return None
        # Wake what the fault froze, and nothing else: the runbook's fencing is what is tested.
        return "; ".join(backend.resume(m.name) for m in cluster.members)

    def check_after(self, cluster: Cluster, backend: MariaDBAPI, fault: str) -> list[str]:
        """Exactly one writable member, and the proxies send writes to it alone."""
        writable = [s.name for s in backend.observe().servers if s.is_writable_primary]
        if len(writable) != 1:
            return [f"{len(writable)} writable members after the drill ({', '.join(writable) or 'none'})"
                    + (": split brain, the runbook did not fence the old primary" if writable else "")]
        return traffic_problems(backend, set(writable))


KIT = MariaDBKit()
