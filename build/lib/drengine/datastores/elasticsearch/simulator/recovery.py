"""Recoveries as time passes: every INITIALIZING copy copies its bytes (from the primary over the
network, or from its node's own disk), then starts; the allocator then places what waited.

Peer recoveries share each node's `indices.recovery.max_bytes_per_sec` (40mb by default,
https://www.elastic.co/guide/en/elasticsearch/reference/current/recovery.html): a recovery goes
at that rate divided by the recoveries in flight on its target or on its source, whichever has
more. A store recovery reads the node's own disk (LOCAL_STORE_BYTES_PER_SEC). How many run at
once is the throttling decider's business (allocator.py).
"""

from __future__ import annotations

from drengine.datastores.elasticsearch.simulator.allocator import Allocator
from drengine.datastores.elasticsearch.simulator.model import (
    INITIALIZING,
    LOCAL_STORE_BYTES_PER_SEC,
    MAX_BYTES_PER_SEC_SETTING,
    RECOVERY_OVERHEAD_SECONDS,
    IndexMeta,
    ShardGroup,
    ShardRouting,
    parse_bytes,
)

Active = tuple[IndexMeta, ShardGroup, ShardRouting]
EPSILON = 1e-6


class Recoveries(Allocator):
    """Recoveries progressing on the clock."""

    def recovering(self) -> list[Active]:
        found: list[Active] = []
        for key in sorted(self._recovering_keys):
            meta = self.state.indices.get(key[0])
            active = [] if meta is None else [r for r in meta.shards[key[1]].routings
                                              if r.state == INITIALIZING and r.recovery is not None]
            if not active:
                self._recovering_keys.discard(key)
            found.extend((meta, meta.shards[key[1]], r) for r in active if meta is not None)
        return found

    def recovery_rate(self, routing: ShardRouting) -> float:
        """Bytes per second this recovery copies now."""
        recovery = routing.recovery
        assert recovery is not None and routing.node_id is not None
        if recovery.type != "peer":
            return float(LOCAL_STORE_BYTES_PER_SEC)
        limit = parse_bytes(self.cluster_setting(MAX_BYTES_PER_SEC_SETTING), MAX_BYTES_PER_SEC_SETTING)
        if limit <= 0:
            return float("inf")  # 0 disables the throttle
        sharing = max(self._incoming.get(routing.node_id, 0),
                      self._outgoing.get(recovery.source_node or "", 0), 1)
        return limit / sharing

    def _seconds_left(self, routing: ShardRouting, now: float) -> float:
        recovery = routing.recovery
        assert recovery is not None
        copying = max(recovery.bytes_total - recovery.bytes_recovered, 0.0) / self.recovery_rate(routing)
        return max(copying, recovery.started_at + RECOVERY_OVERHEAD_SECONDS - now, 0.0)

    def next_recovery_event(self) -> float | None:
        """Seconds until the next recovery completes (None: none in flight)."""
        now = self._now()
        left = [self._seconds_left(r, now) for _, _, r in self.recovering()]
        return min(left) if left else None

    def advance_recoveries(self) -> None:
        """Progress every recovery up to now, completing those that finish on the way (and
        letting the allocator start what they made room for, at the time they finish)."""
        if not self._recovering_keys:
            self.state.recoveries_at = None  # nothing in flight: a read changes nothing
            return
        now = self._now()
        at = self.state.recoveries_at if self.state.recoveries_at is not None else now
        at = min(at, now)
        self._run_recoveries(at, now)
        self.state.recoveries_at = now if self._recovering_keys else None

    def _run_recoveries(self, at: float, now: float) -> None:
        while True:
            active = self.recovering()
            if not active:
                break
            step = min(self._seconds_left(r, at) for _, _, r in active)
            if at + step > now:  # nothing completes before now: copy on, and stop here
                self._copy(active, now - at)
                break
            self._copy(active, step)
            at += step
            self._at = at
            try:
                self._complete_due(active, at)
                self.allocate(if_changed=True)
            finally:
                self._at = None

    def _copy(self, active: list[Active], seconds: float) -> None:
        if seconds <= 0:
            return
        for _, _, routing in active:
            recovery = routing.recovery
            assert recovery is not None
            rate = self.recovery_rate(routing)
            recovery.bytes_recovered = min(float(recovery.bytes_total), recovery.bytes_recovered + rate * seconds)

    def _complete_due(self, active: list[Active], at: float) -> None:
        for meta, group, routing in active:
            if routing.recovery is not None and self._seconds_left(routing, at) <= EPSILON:
                self._complete_recovery(meta, group, routing)

    def settle(self, max_seconds: float = 7 * 86400.0) -> float:
        """Fast-forward model time until no recovery is in flight (scenarios whose recoveries lie
        in the past); return the seconds skipped."""
        skipped = 0.0
        self.advance_recoveries()
        while skipped < max_seconds:
            step = self.next_recovery_event()
            if step is None:
                break
            step = max(step, EPSILON)
            self.state.skew += step
            skipped += step
            self.advance_recoveries()
        return skipped
