"""`drengine inventory discover ceph ADDRESS[:PORT]`: a Ceph cluster's members from one monitor.

Read-only monitor commands, as `ceph mon dump`, `ceph osd dump`, `ceph osd tree` and
`ceph mgr dump` print them with `--format json` (Pacific): the monitors and their public
addresses from the monmap, the OSDs from the OSD map with the CRUSH host each sits under
(which names the machine: a hint for the inventory `host:` to fill in), the managers from the
manager map. Reached through librados with `mon_host` set to the given address, so that no
ceph.conf is needed; `--ceph-conf FILE` adds one (its keyring and auth settings), and the
written section names it.
"""

from __future__ import annotations

import contextlib
import errno
import json
from collections.abc import Mapping
from typing import Any

from drengine.datastores.ceph.connector import JsonDoc, parse_osd_hosts, parse_osds
from drengine.discover import Discovery, Found
from drengine.errors import ConnectError, InputError

V1_PORT = 6789  # the legacy messenger's port; anything else is taken for msgr2 (3300)


def _addr(addrs: object, fallback: str = "") -> tuple[str, int | None]:
    """`{"addrvec": [{"type": "v2", "addr": "10.0.0.1:3300", "nonce": 0}, ...]}`, or `10.0.0.1:6800/1234`:
    the v2 address (else the first) as (host, port)."""
    text = fallback
    if isinstance(addrs, Mapping):
        vec = [a for a in addrs.get("addrvec", []) if isinstance(a, Mapping)]
        chosen = next((a for a in vec if a.get("type") == "v2"), vec[0] if vec else None)
        if chosen is not None:
            text = str(chosen.get("addr", ""))
    text = text.split("/")[0]
    if not text or text.startswith("-") or text.startswith("0.0.0.0"):  # `-` : an OSD that never booted
        return "FILL-IN.invalid", None
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


def ceph_discovery(mon_dump: JsonDoc, osd_dump: JsonDoc, osd_tree: JsonDoc, mgr_dump: JsonDoc | None,
                   asked: str) -> Discovery:
    """The members from the four maps (pure: unit-tested on recorded and simulated answers)."""
    if not isinstance(mon_dump, dict) or not isinstance(osd_dump, dict):
        raise ConnectError(f"{asked} answered `mon dump` or `osd dump` with something other than a JSON object")
    members = []
    for mon in sorted(mon_dump.get("mons", []), key=lambda m: int(m.get("rank", 0))):
        host, port = _addr(mon.get("public_addrs"), str(mon.get("public_addr") or mon.get("addr") or ""))
        members.append(Found(f"mon.{mon['name']}", host, port, "mon"))
    raw_osds = {int(o["osd"]): o for o in osd_dump.get("osds", [])}
    crush_hosts = parse_osd_hosts(osd_tree)
    notes = [f"cluster {mon_dump.get('fsid', '?')}: monmap epoch {mon_dump.get('epoch', '?')}, "
             f"OSD map epoch {osd_dump.get('epoch', '?')}, as {asked} knows it"]
    for osd in parse_osds(osd_dump, crush_hosts):
        raw = raw_osds[osd.id]
        host, _ = _addr(raw.get("public_addrs"), str(raw.get("public_addr") or ""))
        hint = f"CRUSH host {osd.host}" if osd.host else ""
        if host == "FILL-IN.invalid":
            hint = ", ".join(filter(None, [hint, "no address in the OSD map (never booted?)"]))
        members.append(Found(osd.name, host, None, "osd", hint))
    if isinstance(mgr_dump, dict) and mgr_dump.get("active_name"):
        host, _ = _addr(mgr_dump.get("active_addrs"), str(mgr_dump.get("active_addr") or ""))
        members.append(Found(f"mgr.{mgr_dump['active_name']}", host, None, "mgr", "active"))
        for standby in mgr_dump.get("standbys", []):
            members.append(Found(f"mgr.{standby['name']}", "FILL-IN.invalid", None, "mgr",
                                 "standby: the manager map gives no address"))
    elif mgr_dump is None:
        notes.append("the manager map could not be read: add the managers (mgr.NAME, role: mgr) by hand")
    return Discovery("ceph", members, notes)


class _MonitorAsker:
    """librados pointed at one monitor address; only `mon_command` is used, and only to read."""

    def __init__(self, address: str, port: int, client_name: str, conf_file: str | None, timeout: float) -> None:
        from drengine.datastores.ceph.connector import _rados

        self.where = f"the Ceph monitor at {address}:{port}"
        rados = _rados()
        seconds = str(max(1, int(timeout + 0.999)))
        conf = {"mon_host": f"[{'v1' if port == V1_PORT else 'v2'}:{address}:{port}]",
                "client_mount_timeout": seconds, "rados_mon_op_timeout": seconds,
                "log_to_stderr": "false", "err_to_stderr": "false"}
        try:
            # clustername: the default keyring paths (/etc/ceph/ceph.client.admin.keyring) are built from it.
            self.cluster = rados.Rados(name=client_name, clustername="ceph", conffile=conf_file, conf=conf)
        except rados.Error as exc:
            raise InputError(f"cannot load the Ceph configuration {conf_file}: {exc}") from None
        try:
            self.cluster.connect()
        except rados.Error as exc:
            self.close()
            raise ConnectError(f"{self.where} did not let {client_name} in within {timeout:g} s: {exc}. Is a "
                               f"monitor listening there (v2 port 3300, v1 6789), with a quorum? With cephx, "
                               f"give --ceph-conf naming the keyring of {client_name}") from None

    def mon_command(self, prefix: str) -> JsonDoc:
        ret, out, outs = self.cluster.mon_command(json.dumps({"prefix": prefix, "format": "json"}), b"")
        if ret < 0:
            raise ConnectError(f"{self.where} refused `ceph {prefix}` ({errno.errorcode.get(-ret, ret)}): {outs}")
        doc: JsonDoc = json.loads(out)
        return doc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cluster.shutdown()


def discover_ceph(address: str, port: int, user: str, conf_file: str | None = None,
                  timeout: float = 5.0) -> Discovery:
    client = user if user.startswith("client.") else f"client.{user}"
    asker = _MonitorAsker(address, port, client, conf_file, timeout)
    try:
        maps: dict[str, Any] = {p: asker.mon_command(p) for p in ("mon dump", "osd dump", "osd tree")}
        try:
            maps["mgr dump"] = asker.mon_command("mgr dump")
        except ConnectError:
            maps["mgr dump"] = None
    finally:
        asker.close()
    return ceph_discovery(maps["mon dump"], maps["osd dump"], maps["osd tree"], maps["mgr dump"], asker.where)
