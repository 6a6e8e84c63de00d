"""`drengine lab reset`: a simulated cluster starts over from its scenario. Its kept state (the
file every status and run of it reads, see backends.simulated_state_file) is removed; the next
status or run builds the scenario again."""

from __future__ import annotations

from drengine.backends import simulated_state_file
from drengine.errors import InputError, LockHeld
from drengine.inventory import load_inventory
from drengine.lock import open_lock


def reset_simulated(inventory_path: str, only: str | None = None) -> list[str]:
    """What was reset, one line per simulated cluster. A real cluster named is refused; a
    cluster a run holds the lock of is refused (the run owns its state until it ends)."""
    inventory = load_inventory(inventory_path)
    clusters = [inventory.cluster(only)] if only else list(inventory.clusters.values())
    simulated = [c for c in clusters if c.simulated is not None]
    if only and not simulated:
        raise InputError(f"cluster {only} is not simulated (no `simulated:` in {inventory_path}); "
                         f"lab reset starts only simulated clusters over")
    if not simulated:
        raise InputError(f"{inventory_path} has no simulated cluster; lab reset starts only simulated clusters over")
    lines = []
    for cluster in simulated:
        holder = open_lock(inventory.lock_for(cluster), cluster.name).holder()
        if holder is not None:
            raise LockHeld(f"cluster {cluster.name}: run {holder.run_id} holds its lock; let it end (or stop it) "
                           f"before starting the cluster over")
        assert cluster.simulated is not None
        state = simulated_state_file(cluster, inventory)
        if state.exists():
            state.unlink()
            lines.append(f"{cluster.name}: back to scenario {cluster.simulated.scenario} (removed {state})")
        else:
            lines.append(f"{cluster.name}: already at scenario {cluster.simulated.scenario} (nothing kept)")
    return lines
