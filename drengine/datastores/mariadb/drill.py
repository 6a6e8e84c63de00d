"""Drill kit for MariaDB replication: faults, health check and canaries (a row per canary
in drengine.canary on the current primary)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from drengine.clock import wait_until
from drengine.datastores.mariadb.connector import ClusterView, MariaDBAPI, Sql
from drengine.drill import Fault, Injected, Restore
from drengine.errors import DrengineError, InputError
from drengine.faults import signal_member, start_member
from drengine.inventory import Cluster, Inventory

CANARY_DDL = [
    Sql("CREATE DATABASE IF NOT EXISTS drengine"),
    Sql("CREATE TABLE IF NOT EXISTS drengine.canary (id VARCHAR(64) PRIMARY KEY, written_at DOUBLE NOT NULL)"),
]
UNREPLICATED = 10


def _primary(view: ClusterView) -> str | None:
    writable = [s.name for s in view.servers if s.is_writable_primary]
    return writable[0] if len(writable) == 1 else None


class MariaDBKit:
    faults = {
        "kill-primary": Fault("kill-primary", "SIGKILL the primary's server process"),
        "hang-primary": Fault("hang-primary", "SIGSTOP the primary (SIGCONT after the drill)"),
        "lag-replica": Fault("lag-replica", "stop the last replica's IO thread, write canaries the others receive, "
                                            "then kill the primary: the lagging replica must not win and must catch up"),
        "cut-replication": Fault("cut-replication", f"stop every replica's IO thread, write {UNREPLICATED} canaries "
                                                    f"only the primary holds, then kill it: exactly those are lost"),
    }

    def __init__(self) -> None:
        self._primary: str | None = None
        self.inventory: Inventory | None = None

    def _api(self, backend: Any) -> MariaDBAPI:
        return cast(MariaDBAPI, backend)

    def health(self, cluster: Cluster, backend: Any) -> list[str]:
        view = self._api(backend).observe()
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
            self._primary = primary
            for sql in CANARY_DDL:
                self._api(backend).execute(primary, sql)
        return problems

    def _rediscover(self, backend: Any) -> str | None:
        self._primary = _primary(self._api(backend).observe())
        return self._primary

    def write_canary(self, cluster: Cluster, backend: Any, key: str) -> bool:
        api = self._api(backend)
        target = self._primary or self._rediscover(backend)
        if target is None:
            return False
        insert = Sql("INSERT INTO drengine.canary (id, written_at) VALUES (%s, %s)", (key, round(time.time(), 3)))
        try:
            api.execute(target, insert, timeout=None)
            return True
        except DrengineError:
            self._primary = None  # look for the (new) primary on the next write
            return False

    def read_canaries(self, cluster: Cluster, backend: Any, keys: Sequence[str] = ()) -> set[str]:
        target = self._rediscover(backend)
        if target is None:
            return set()
        rows = self._api(backend).query(target, Sql("SELECT id FROM drengine.canary"))
        return {str(r[0]) for r in rows}

    def inject(self, cluster: Cluster, backend: Any, fault: str) -> Injected:
        api = self._api(backend)
        primary = self._primary or self._rediscover(backend)
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
            pos = str(api.query(primary, Sql("SELECT @@gtid_binlog_pos"))[0][0])
            for r in replicas:
                api.query(r, Sql("SELECT MASTER_GTID_WAIT(%s, %s)", (pos, 10)), timeout=10)
        if fault == "lag-replica":
            api.execute(replicas[-1], Sql("STOP SLAVE IO_THREAD"))
            notes.append(f"STOP SLAVE IO_THREAD on {replicas[-1]}")
        if fault == "cut-replication":
            for r in replicas:
                api.execute(r, Sql("STOP SLAVE IO_THREAD"))
            notes.append(f"STOP SLAVE IO_THREAD on {', '.join(replicas)}")
        if fault in ("lag-replica", "cut-replication"):
            for i in range(UNREPLICATED):
                key = f"canary-fault-{i:03d}"
                if self.write_canary(cluster, backend, key):
                    acked.append(key)
            notes.append(f"{len(acked)} canaries written on {primary} after that")
        self._primary = None
        notes.append(self._stop_member(cluster, backend, primary, "STOP" if fault == "hang-primary" else "KILL"))
        self._victim = primary
        return Injected("; ".join(notes), acked, members=[primary])

    def _stop_member(self, cluster: Cluster, backend: Any, name: str, signal_name: str) -> str:
        if cluster.simulated is not None:
            if signal_name == "KILL":
                backend.kill(name)
            elif signal_name == "STOP":
                backend.hang(name)
            else:
                backend.revive(name)
            return f"simulated SIG{signal_name} of {name}"
        assert self.inventory is not None
        return signal_member(self.inventory, cluster, cluster.member(name), signal_name)

    def declares_gone(self, cluster: Cluster, fault: str) -> tuple[str, ...]:
        return ()

    def settled(self, cluster: Cluster, backend: Any, fault: str) -> bool:
        view = self._api(backend).observe()
        writable = [s for s in view.servers if s.is_writable_primary]
        receiving = [s for s in view.servers if s.reachable and any(ch.io_running == "Yes" for ch in s.channels)]
        return not writable and not receiving

    def bring_back(self, cluster: Cluster, backend: Any, fault: str, run_dir: Path) -> Restore | None:
        victim = self._victim
        if fault == "hang-primary":
            return Restore(f"{victim} was continued and fenced read-only", "mariadb-rejoin")
        if cluster.simulated is not None:
            backend.revive(victim)
            return Restore(f"simulated restart of {victim}", "mariadb-rejoin")
        assert self.inventory is not None
        return Restore(f"started {victim}: {start_member(self.inventory, cluster, cluster.member(victim))}", "mariadb-rejoin")

    def cleanup(self, cluster: Cluster, backend: Any, fault: str) -> str | None:
        if fault != "hang-primary":
            return None
        text = self._stop_member(cluster, backend, self._victim, "CONT")
        # The continued old primary still believes it is the primary: fence it at once.
        def fenced() -> bool:
            try:
                self._api(backend).execute(self._victim, Sql("SET GLOBAL read_only=1"))
                return True
            except DrengineError:
                return False

        if wait_until(fenced, 2.0, interval=0.1):
            return f"{text}; {self._victim} set read_only=1 (fenced); rejoin it with mariadb-rejoin"
        return f"{text}; WARNING: could not set read_only=1 on {self._victim}: it may take writes (split brain)"


KIT = MariaDBKit()
