"""Cluster and index settings: read, validated update (unknown settings refused as
Elasticsearch refuses them), and replica count changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drengine.datastores.elasticsearch.simulator.allocator import Allocator
from drengine.datastores.elasticsearch.simulator.model import (
    CLUSTER_DEFAULTS,
    DELAYED_TIMEOUT_SETTING,
    ENABLE_SETTING,
    ENABLE_VALUES,
    EXCLUDE_PREFIX,
    FLOOD_WATERMARK_SETTING,
    HIGH_WATERMARK_SETTING,
    LOW_WATERMARK_SETTING,
    REPLICAS_SETTING,
    SHARDS_SETTING,
    STARTED,
    IndexMeta,
    JsonDict,
    flatten_settings,
    illegal_argument,
    nest_settings,
    parse_time_value,
    parse_watermark,
    setting_string,
)


class SettingsApi(Allocator):
    """The settings APIs."""

    def get_cluster_settings(self, *, include_defaults: bool = False, flat: bool = False) -> JsonDict:
        shape = (lambda d: dict(sorted(d.items()))) if flat else nest_settings
        body: JsonDict = {
            "persistent": shape(self.state.persistent),
            "transient": shape(self.state.transient),
        }
        if include_defaults:
            defaults = {k: v for k, v in CLUSTER_DEFAULTS.items() if k not in self._cluster_settings_flat()}
            body["defaults"] = shape(defaults)
        return body

    def put_cluster_settings(
        self,
        persistent: Mapping[str, Any] | None = None,
        transient: Mapping[str, Any] | None = None,
    ) -> JsonDict:
        self.require_master()
        updates = {
            "persistent": flatten_settings(persistent or {}),
            "transient": flatten_settings(transient or {}),
        }
        for scope, values in updates.items():
            for key, value in values.items():
                self._check_cluster_setting(scope, key, value)
        applied: dict[str, dict[str, str]] = {"persistent": {}, "transient": {}}
        for scope, values in updates.items():
            target = self.state.persistent if scope == "persistent" else self.state.transient
            for key, value in values.items():
                if value is None:
                    target.pop(key, None)
                else:
                    target[key] = applied[scope][key] = setting_string(value)
        self._changed()
        self.allocate()
        return {
            "acknowledged": True,
            "persistent": nest_settings(applied["persistent"]),
            "transient": nest_settings(applied["transient"]),
        }

    @staticmethod
    def _check_cluster_setting(scope: str, key: str, value: Any) -> None:
        if key not in CLUSTER_DEFAULTS and not key.startswith(EXCLUDE_PREFIX):
            raise illegal_argument(f"{scope} setting [{key}], not recognized")
        if value is None:
            return
        text = setting_string(value)
        if key == ENABLE_SETTING and text.lower() not in ENABLE_VALUES:
            raise illegal_argument(f"Illegal allocation.enable value [{text.upper()}]")
        if key in (
            LOW_WATERMARK_SETTING,
            HIGH_WATERMARK_SETTING,
            FLOOD_WATERMARK_SETTING,
        ):
            parse_watermark(text, key)

    def get_index_settings(self, target: str | None = None, *, flat: bool = False) -> JsonDict:
        body: JsonDict = {}
        for meta in self.resolve_indices(target):
            settings = {
                SHARDS_SETTING: str(meta.number_of_shards),
                REPLICAS_SETTING: str(meta.number_of_replicas),
                "index.uuid": meta.uuid,
                "index.provided_name": meta.name,
                "index.creation_date": str(int(meta.created * 1000)),
                "index.version.created": "9009000",
                "index.routing.allocation.include._tier_preference": "data_content",
                **meta.settings,
            }
            body[meta.name] = {"settings": dict(sorted(settings.items())) if flat else nest_settings(settings)}
        return body

    def put_index_settings(self, target: str | None, document: Mapping[str, Any]) -> JsonDict:
        self.require_master()
        metas = self.resolve_indices(target)
        values = self._index_settings_doc(document)
        for key, value in values.items():
            self._check_index_setting(key, creating=False)
            if key == DELAYED_TIMEOUT_SETTING and value is not None:
                parse_time_value(setting_string(value), key)
            if key == REPLICAS_SETTING and value is not None and (not str(value).isdigit()):
                raise illegal_argument(f"Failed to parse value [{value}] for setting [{key}] must be >= 0")
        for meta in metas:
            for key, value in values.items():
                if key == REPLICAS_SETTING:
                    self._set_replicas(meta, 1 if value is None else int(value))
                elif value is None:
                    meta.settings.pop(key, None)
                else:
                    meta.settings[key] = setting_string(value)
        self._changed()
        self.allocate()
        return {"acknowledged": True}

    def _set_replicas(self, meta: IndexMeta, replicas: int) -> None:
        now = self._now()
        for group in meta.shards:
            current = [r for r in group.routings if not r.primary]
            if replicas > len(current):
                for _ in range(replicas - len(current)):
                    group.routings.append(self._unassigned_routing(False, "REPLICA_ADDED", now))
                self._unassigned_keys.add((meta.name, group.shard))
            # Drop unassigned copies first so that lowering replicas never discards live data needlessly.
            surplus = sorted(current, key=lambda r: r.state == STARTED)[: max(len(current) - replicas, 0)]
            for routing in surplus:
                if routing.node_id is not None:
                    self._load[routing.node_id] -= 1
                group.routings.remove(routing)
        meta.number_of_replicas = replicas
