"""The steps the Ceph runbooks name, one module per runbook: ceph-degrade (keep serving with
reduced redundancy), ceph-restore (put the redundancy back) and ceph-mon-quorum (monmap
surgery). Importing this package registers them all.

Their decisions are pure functions in `drengine.datastores.ceph.decisions`; the facts they
journal are in `drengine.datastores.ceph.facts`.
"""

from drengine.datastores.ceph.actions import degrade, quorum, restore

__all__ = ["degrade", "quorum", "restore"]
