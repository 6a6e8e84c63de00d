"""`drengine status` over a fleet (prints figures; no assertions).

An inventory of 50 simulated clusters of all five datastores, a third of them with a hung
member. The hung members are MongoDB members served over the wire protocol that accept TCP
and never answer, so a hung member costs real waiting, as on a real cluster (the in-process
MariaDB and Galera twins answer "hung" at once). Figures:

- the whole fleet, every cluster probed at once (`probe_fleet`), against the budget the issue
  sets: one read timeout plus 1 s;
- baseline, in the same run: one hung cluster alone; the ratio fleet / one cluster says how
  close the fleet comes to "about one timeout whatever the number of clusters";
- what probing the same clusters one after the other costs (measured on the first 10 and
  scaled to 50), for scale.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from drengine.inventory import load_inventory  # noqa: E402
from drengine.status import probe_cluster, probe_fleet  # noqa: E402

CONNECT, READ = 1.0, 2.0
CLUSTERS = 50
ROUNDS = 3

MEMBERS = {
    "mariadb": "[{name: db1, address: 127.0.1.11}, {name: db2, address: 127.0.1.12}, {name: db3, address: 127.0.1.13}]",
    "galera": "[{name: g1, address: 127.0.2.11}, {name: g2, address: 127.0.2.12}, {name: g3, address: 127.0.2.13}]",
    "mongodb": "[{name: m0}, {name: m1}, {name: m2}]",
    "ceph": "[{name: mon.a, role: mon}, {name: mon.b, role: mon}, {name: mon.c, role: mon}, "
            "{name: osd.0, role: osd}, {name: osd.1, role: osd}, {name: osd.2, role: osd}]",
    "elasticsearch": "[{name: node-1}, {name: node-2}, {name: node-3}]",
}
# Every third cluster has a hung member; the others cycle through the datastores and their situations.
OTHERS = [("mariadb", "primary-dead-replica-lagging"), ("galera", "two-of-three-killed"), ("ceph", "two-osds-down"),
          ("elasticsearch", "one-node-lost-3"), ("mongodb", "healthy-3"), ("mariadb", "healthy"),
          ("galera", "healthy"), ("ceph", "healthy"), ("elasticsearch", "healthy-3")]


def inventory_text() -> str:
    lines = ["clusters:"]
    others = 0
    for i in range(CLUSTERS):
        if i % 3 == 0:
            kind, scenario = "mongodb", "hung-member"
        else:
            kind, scenario = OTHERS[others % len(OTHERS)]
            others += 1
        lines += [f"  c{i:02d}:", f"    kind: {kind}", f"    simulated: {{scenario: {scenario}}}",
                  f"    timeouts: {{connect: {CONNECT}, read: {READ}}}", f"    members: {MEMBERS[kind]}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.yaml"
        path.write_text(inventory_text())
        inv = load_inventory(path)
        hung = [c for c in inv.clusters.values() if c.simulated and c.simulated.scenario == "hung-member"]
        single, fleet = [], []
        for _ in range(ROUNDS):
            started = time.monotonic()
            alone = probe_cluster(hung[0], inv)
            single.append(time.monotonic() - started)
            result = probe_fleet(inv)
            fleet.append(result.seconds)
        verdicts: dict[str, int] = {}
        for c in result.clusters:
            verdicts[c.verdict.value] = verdicts.get(c.verdict.value, 0) + 1
        hung_seen = sum(1 for c in result.clusters for m in c.members if m.state.value == "hung")
        started = time.monotonic()
        for cluster in list(inv.clusters.values())[:10]:
            probe_cluster(cluster, inv)
        serial = (time.monotonic() - started) * CLUSTERS / 10
    budget = READ + 1.0
    best, median = min(fleet), statistics.median(fleet)
    print(f"fleet of {CLUSTERS} simulated clusters ({len(hung)} with a hung member), timeouts connect {CONNECT:g} s, "
          f"read {READ:g} s")
    print(f"  verdicts: {verdicts}; hung members reported: {hung_seen}; the hung cluster alone: {alone.verdict.value}")
    print(f"  one hung cluster alone (baseline): median {statistics.median(single):.2f} s")
    print(f"  whole fleet at once: median {median:.2f} s, best {best:.2f} s over {ROUNDS} rounds "
          f"= {median / statistics.median(single):.2f}x one cluster")
    print(f"  budget (one read timeout + 1 s): {budget:.2f} s -> median is {median / budget:.2f} of it "
          f"({'within' if median <= budget else 'OVER'})")
    print(f"  the same clusters one after the other (10 measured, scaled to {CLUSTERS}): {serial:.1f} s "
          f"= {serial / median:.1f}x the fleet view")


if __name__ == "__main__":
    main()
