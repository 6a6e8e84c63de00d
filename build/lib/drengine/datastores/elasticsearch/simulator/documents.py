"""Documents: index into the primary and every started replica, get from the primary, count."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drengine.datastores.elasticsearch.simulator.core import ClusterCore
from drengine.datastores.elasticsearch.simulator.model import Doc, JsonDict, SimApiError, StoreCopy, shard_for_doc


class DocumentsApi(ClusterCore):
    """The document APIs the drills and tests use."""

    def ensure_index(self, index: str) -> None:
        """A write to a missing index creates it (action.auto_create_index)."""
        self.require_master()
        if index not in self.state.indices:
            self.create_index(index)

    def primary_active_for(self, index: str, doc_id: str) -> bool:
        """Whether the primary a write of `doc_id` goes to is active (a write waits for it)."""
        meta = self.state.indices.get(index)
        if meta is None:
            return True  # index_doc creates it
        return meta.shards[shard_for_doc(doc_id, meta.number_of_shards)].primary_store() is not None

    def primaries_active(self, index: str) -> bool:
        meta = self.state.indices.get(index)
        return meta is not None and all(group.primary_store() is not None for group in meta.shards)

    def index_doc(self, index: str, doc_id: str, source: Mapping[str, Any], *, timeout: str = "1m") -> tuple[int, JsonDict]:
        """Index into the primary and every started replica; absent in-sync copies become stale.
        The caller has waited `timeout` for an inactive primary (the REST layer's business)."""
        self.ensure_index(index)
        meta = self.index(index)
        group = meta.shards[shard_for_doc(doc_id, meta.number_of_shards)]
        primary = group.primary_store()
        if primary is None:
            # TransportReplicationAction.retryBecauseUnavailable: "primary shard is not active Timeout: [..], request: [..]"
            raise SimApiError(
                503,
                "unavailable_shards_exception",
                f"[{index}][{group.shard}] primary shard is not active Timeout: [{timeout}], request: [index {{[{index}][{doc_id}]}}]",
            )
        seq_no = primary.max_seq_no + 1
        existing = primary.docs.get(doc_id)
        doc = Doc(
            seq_no=seq_no,
            version=existing.version + 1 if existing else 1,
            source=dict(source),
        )
        started = group.started()
        for routing in started:
            assert routing.node_id is not None
            store = group.stores[routing.node_id]
            store.docs[doc_id] = doc
            store.max_seq_no = seq_no
        live_ids = {r.allocation_id for r in started}
        group.in_sync = [a for a in group.in_sync if a in live_ids]
        self._changed()
        body = {
            "_index": index,
            "_id": doc_id,
            "_version": doc.version,
            "result": "updated" if existing else "created",
            "_shards": {
                "total": len(group.routings),
                "successful": len(started),
                "failed": 0,
            },
            "_seq_no": seq_no,
            "_primary_term": group.primary_term,
        }
        return (200 if existing else 201), body

    def get_doc(self, index: str, doc_id: str) -> tuple[int, JsonDict]:
        meta = self.index(index)
        group = meta.shards[shard_for_doc(doc_id, meta.number_of_shards)]
        primary = group.primary_store()
        if primary is None:
            raise SimApiError(
                503,
                "no_shard_available_action_exception",
                f"No shard available for [get [{index}][{doc_id}]]",
            )
        doc = primary.docs.get(doc_id)
        if doc is None:
            return 404, {"_index": index, "_id": doc_id, "found": False}
        return 200, {
            "_index": index,
            "_id": doc_id,
            "_version": doc.version,
            "_seq_no": doc.seq_no,
            "_primary_term": group.primary_term,
            "found": True,
            "_source": doc.source,
        }

    def _searchable(self, index: str | None) -> tuple[int, list[tuple[str, StoreCopy]]]:
        """(shards asked, (index, primary store) of the shards that can answer)."""
        total = 0
        stores: list[tuple[str, StoreCopy]] = []
        for meta in self.resolve_indices(index):
            for group in meta.shards:
                total += 1
                store = group.primary_store()
                if store is not None:
                    stores.append((meta.name, store))
        if total and not stores:
            raise SimApiError(503, "search_phase_execution_exception", "all shards failed", phase="query",
                              grouped=True, failed_shards=[])
        return total, stores

    def search(self, index: str | None = None, size: int = 10) -> JsonDict:
        """A match_all search without _source: the ids of the first `size` documents."""
        total, stores = self._searchable(index)
        hits = [{"_index": name, "_id": doc_id, "_score": 1.0} for name, store in stores for doc_id in sorted(store.docs)]
        return {
            "took": 1,
            "timed_out": False,
            "_shards": {"total": total, "successful": len(stores), "skipped": 0, "failed": total - len(stores)},
            "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": 1.0 if hits else None,
                     "hits": hits[:size]},
        }

    def count(self, index: str | None = None) -> JsonDict:
        total, stores = self._searchable(index)
        successful = len(stores)
        documents = sum(len(store.docs) for _, store in stores)
        return {
            "count": documents,
            "_shards": {
                "total": total,
                "successful": successful,
                "skipped": 0,
                "failed": total - successful,
            },
        }
