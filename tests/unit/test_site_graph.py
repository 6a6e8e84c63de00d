"""A site in the inventory: `depends_on:` checked at FILE:LINE, the dependency order, the hosts
shared between clusters, and the site view of a fleet's answers (pure, no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drengine.errors import InputError
from drengine.inventory import load_inventory
from drengine.site.graph import cycles, dependency_order, dependency_problems
from drengine.site.view import Standing, site_status
from drengine.status import Advice, ClusterStatus, FleetStatus, Verdict
from tests.helpers import ROOT, cli

SITE = """\
hosts:
  s1: {address: 127.0.3.11}
  s2: {address: 127.0.3.12}
clusters:
  ceph:
    kind: ceph
    members:
      - {name: mon.a, host: s1}
      - {name: osd.0, host: s2}
  db:
    kind: mariadb
    depends_on: [DEPS]
    members:
      - {name: db1, address: 127.0.0.1, port: 3306, host: s1}
      - {name: db2, address: 127.0.0.1, port: 3307, host: s2}
  galera:
    kind: galera
    depends_on: [GALERA]
    members:
      - {name: g1, address: 127.0.0.1, port: 3308, host: s1}
"""


def site(tmp_path: Path, deps: str = "ceph", galera: str = "") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("DEPS", deps).replace("GALERA", galera))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InputError) as caught:
        load_inventory(path)
    return caught.value.problems


def test_dependencies_and_hosts_are_read(tmp_path: Path) -> None:
    inv = load_inventory(site(tmp_path, "ceph", "db"))
    assert inv.depends() == {"ceph": [], "db": ["ceph"], "galera": ["db"]}
    on_s1 = [(c.name, m.name) for c, m in inv.members_on("s1")]
    assert on_s1 == [("ceph", "mon.a"), ("db", "db1"), ("galera", "g1")]
    with pytest.raises(InputError, match="no host named 's3'.*Hosts: s1, s2"):
        inv.members_on("s3")


def test_an_unknown_dependency_is_refused_at_its_line(tmp_path: Path) -> None:
    problems = problems_of(site(tmp_path, "cepf"))
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'site.yaml'}:12: ")
    assert "depends on 'cepf', which is no cluster" in problems[0] and "Did you mean 'ceph'" in problems[0]


def test_a_cycle_is_refused_at_the_line_that_closes_it(tmp_path: Path) -> None:
    problems = problems_of(site(tmp_path, "ceph, galera", "db"))
    assert len(problems) == 1
    assert ":12: " in problems[0] or ":18: " in problems[0]
    assert "db -> galera -> db" in problems[0] or "galera -> db -> galera" in problems[0]


def test_self_and_twice_are_refused(tmp_path: Path) -> None:
    problems = problems_of(site(tmp_path, "db, ceph, ceph"))
    assert any(":12: " in p and "depends on itself" in p for p in problems)
    assert any(":12: " in p and "names ceph twice" in p for p in problems)


def test_the_cli_says_where_and_exits_2(tmp_path: Path) -> None:
    code, out = cli("status", "-i", str(site(tmp_path, "cepf")))
    assert code == 2
    assert f"{tmp_path / 'site.yaml'}:12:" in out and "Traceback" not in out


def test_the_shipped_site_inventories_load() -> None:
    for name in ("site-simulated.yaml", "site-simulated-healthy.yaml"):
        inv = load_inventory(ROOT / "inventory" / name)
        assert inv.depends()["site-mariadb"] == ["site-ceph"]
        on_s3 = {c.name for c, _ in inv.members_on("s3")}
        assert on_s3 == {"site-ceph", "site-mariadb", "site-galera"}


@given(st.dictionaries(st.sampled_from("abcdef"), st.lists(st.sampled_from("abcdef"), max_size=3, unique=True),
                       min_size=1))
def test_order_puts_every_dependency_first_or_a_cycle_is_named(graph: dict[str, list[str]]) -> None:
    graph = {n: [d for d in deps if d in graph and d != n] for n, deps in graph.items()}
    found = cycles(graph)
    if found:
        assert dependency_problems(graph)
        for cycle in found:
            assert cycle[0] == cycle[-1]
            assert all(b in graph[a] for a, b in zip(cycle, cycle[1:], strict=False))
        return
    assert not dependency_problems(graph)
    order = dependency_order(graph)
    assert sorted(order) == sorted(graph)
    for name, deps in graph.items():
        assert all(order.index(d) < order.index(name) for d in deps)


def answer(name: str, verdict: Verdict, runbook: str | None = None) -> ClusterStatus:
    advice = [Advice(why=f"fix {name}", runbook=runbook, command=f"drengine plan {runbook}" if runbook else "")]
    return ClusterStatus(cluster=name, kind="x", verdict=verdict, headline=f"{name} is {verdict.value}",
                         advice=advice if verdict.needs_action else [])


def test_the_site_view_names_what_waits_and_what_to_do_first(tmp_path: Path) -> None:
    inv = load_inventory(site(tmp_path, "ceph", "db"))
    fleet = FleetStatus(inventory=inv.path, seconds=0.1, clusters=[
        answer("galera", Verdict.HEALTHY), answer("db", Verdict.DOWN, "mariadb-promote-survivor"),
        answer("ceph", Verdict.DOWN, "ceph-degrade")])
    view = site_status(inv, fleet)
    assert view.order == ["ceph", "db", "galera"]
    assert [view.cluster(n).standing for n in view.order] == [Standing.BROKEN, Standing.WAITS, Standing.AT_RISK]
    assert view.cluster("galera").waits_for == ["db", "ceph"]
    assert view.first == ["ceph"]
    assert view.first_words[0] == "ceph (down): $ drengine plan ceph-degrade"
    assert "db (down) waits for ceph" in view.first_words[1]


def test_a_degraded_dependency_still_serves(tmp_path: Path) -> None:
    inv = load_inventory(site(tmp_path, "ceph", "db"))
    fleet = FleetStatus(inventory=inv.path, seconds=0.1, clusters=[
        answer("ceph", Verdict.DEGRADED, "ceph-degrade"), answer("db", Verdict.DOWN, "mariadb-promote-survivor"),
        answer("galera", Verdict.HEALTHY)])
    view = site_status(inv, fleet)
    assert view.cluster("db").standing is Standing.BROKEN
    assert view.first == ["ceph", "db"]
