"""The real labs as one site: MariaDB, Galera and Ceph on loopback (`drengine lab up site`),
their members placed on the SSH lab hosts so that one host carries members of all three
clusters, and MariaDB declared dependent on Ceph (the databases' volumes would be RBD images;
in the lab the dependency is declared, not wired).

host1 carries the MariaDB primary db1, the Galera nodes g1 and g2 (the survivor g3 is not a
Primary component alone) and the Ceph OSD osd.0 (PGs stay active on two OSDs); host2 and
host3 the rest. The monitors and the manager stay on the machine itself (`lab-local`).
Signals and service commands reach each member over its host, as on a real site: the lab
hosts are this machine, so a pid file read over host1 is the daemon's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from drengine.errors import InputError

PLACEMENT = {
    "lab-mariadb": {"db1": "host1", "db2": "host2", "db3": "host3"},
    "lab-galera": {"g1": "host1", "g2": "host1", "g3": "host3"},
    "lab-ceph": {"osd.0": "host1", "osd.1": "host2", "osd.2": "host3"},
}
DEPENDS = {"lab-mariadb": ["lab-ceph"]}


def place(inventory: dict[str, Any]) -> dict[str, Any]:
    """The lab inventory with the site's placement and dependencies."""
    clusters = inventory.get("clusters") or {}
    hosts = inventory.get("hosts") or {}
    missing = [name for name in PLACEMENT if name not in clusters]
    if missing:
        raise InputError(f"the site lab needs the {', '.join(missing)} lab(s) in the inventory "
                         f"(`drengine lab up ssh|mariadb|galera|ceph` with the same --inventory-out)")
    for cluster, members in PLACEMENT.items():
        for member in clusters[cluster]["members"]:
            host = members.get(member["name"])
            if host is not None:
                if host not in hosts:
                    raise InputError(f"the site lab places {member['name']} on {host}, which the inventory "
                                     f"does not list under hosts: (`drengine lab up ssh` first)")
                member["host"] = host
        if cluster in DEPENDS:
            clusters[cluster]["depends_on"] = list(DEPENDS[cluster])
    return inventory


def write_site_inventory(lab_inventory: Path, out: Path) -> None:
    from drengine.files import atomic_write

    data = yaml.safe_load(lab_inventory.read_text(encoding="utf-8"))
    header = "# Written by `drengine lab up site`: the MariaDB, Galera and Ceph labs as one site.\n"
    atomic_write(out, header + yaml.safe_dump(place(data), sort_keys=False))
