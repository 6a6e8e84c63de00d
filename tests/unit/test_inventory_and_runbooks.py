"""Bad inventories and runbooks are refused with FILE:LINE and exit 2, never a traceback."""

from __future__ import annotations

import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import cli

GOOD = """\
clusters:
  c1:
    kind: mariadb
    members:
      - {name: db1, address: 127.0.0.1, port: 3306}
      - {name: db2, address: 127.0.0.1, port: 3307}
"""


def write(tmp_path: Path, text: str, name: str = "inv.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_good_inventory_passes(tmp_path: Path) -> None:
    code, out = cli("inventory", "check", "-i", write(tmp_path, GOOD))
    assert code == 0, out
    assert "c1: mariadb, 2 member(s)" in out


def test_wrong_field_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("port: 3307", "prot: 3307"))
    code, out = cli("inventory", "check", "-i", path)
    assert code == 2
    assert f"{path}:6: clusters.c1.members.1.prot: unknown field" in out


def test_hostile_address_is_refused_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("address: 127.0.0.1, port: 3307", "address: 'db2; rm -rf /', port: 3307"))
    code, out = cli("inventory", "check", "-i", path)
    assert code == 2
    assert f"{path}:6:" in out and "expected an IP address or a DNS host name" in out


def test_duplicate_member_and_unknown_host(tmp_path: Path) -> None:
    text = GOOD.replace("name: db2", "name: db1").replace("port: 3307}", "port: 3307, host: nowhere}")
    code, out = cli("inventory", "check", "-i", write(tmp_path, text))
    assert code == 2
    assert "member 'db1' is listed twice" in out or "nowhere" in out


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "  c1:\n    kind: galera\n    members: [{name: x}]\n")
    code, out = cli("inventory", "check", "-i", path)
    assert code == 2
    assert f"{path}:7: key 'c1' appears twice" in out


def test_missing_file_and_not_yaml(tmp_path: Path) -> None:
    code, out = cli("inventory", "check", "-i", str(tmp_path / "none.yaml"))
    assert code == 2 and "cannot read the file" in out
    code, out = cli("inventory", "check", "-i", write(tmp_path, "clusters: [unclosed\n"))
    assert code == 2 and "not valid YAML" in out


yaml_chars = st.text(alphabet=string.printable, max_size=300)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=yaml_chars)
def test_any_inventory_text_gives_a_clear_answer(tmp_path: Path, junk: str) -> None:
    code, out = cli("inventory", "check", "-i", write(tmp_path, junk, "fuzz.yaml"))
    assert code in (0, 2)
    assert "Traceback" not in out and "internal error" not in out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(min_size=1, max_size=40), address=st.text(min_size=1, max_size=40))
def test_hostile_names_never_crash(tmp_path: Path, name: str, address: str) -> None:
    import json

    text = f"clusters:\n  c:\n    kind: mariadb\n    members:\n      - {{name: {json.dumps(name)}, address: {json.dumps(address)}}}\n"
    code, out = cli("inventory", "check", "-i", write(tmp_path, text, "hostile.yaml"))
    assert code in (0, 2)
    assert "internal error" not in out


RUNBOOK = """\
name: t
kind: mariadb
summary: test
goal:
  action: mariadb.observe
start: a
steps:
  - id: a
    action: mariadb.observe
    next: b
  - id: b
    action: mariadb.promote
    next: done
"""


def test_unknown_action_is_refused_with_line(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK.replace("mariadb.promote", "mariadb.promot"), "rb.yaml")
    code, out = cli("runbook", "show", path)
    assert code == 2
    assert f"{path}:12: unknown action 'mariadb.promot'" in out


def test_unreachable_step_and_dead_end(tmp_path: Path) -> None:
    text = RUNBOOK + "  - id: lost\n    action: mariadb.observe\n    next: loop\n  - id: loop\n    action: mariadb.observe\n    next: lost\n"
    path = write(tmp_path, text, "rb.yaml")
    code, out = cli("runbook", "show", path)
    assert code == 2
    assert f"{path}:14: step lost cannot be reached from start a" in out


def test_loop_without_exit_is_refused(tmp_path: Path) -> None:
    text = RUNBOOK.replace("next: done", "next: a\n    branches: {failed: a}").replace("mariadb.promote", "mariadb.observe")
    text = text.replace("    next: b\n", "    next: b\n    branches: {failed: b}\n", 1)
    path = write(tmp_path, text, "rb.yaml")
    code, out = cli("runbook", "show", path)
    assert code == 2
    assert "can never reach an end" in out


def test_mutating_step_cannot_drop_its_gate(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK.replace("action: mariadb.promote", "action: mariadb.promote\n    gate: none"), "rb.yaml")
    code, out = cli("runbook", "show", path)
    assert code == 2
    assert "mutating steps are always gated" in out


def test_bad_param_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, RUNBOOK.replace("action: mariadb.promote", "action: mariadb.promote\n    params: {catch_up_timeout: -1}"), "rb.yaml")
    code, out = cli("runbook", "show", path)
    assert code == 2
    assert "catch_up_timeout" in out


def test_shipped_runbooks_are_valid_and_render_mermaid() -> None:
    code, out = cli("runbook", "list")
    assert code == 0, out
    code, out = cli("runbook", "show", "mariadb-promote-survivor", "--format", "mermaid")
    assert code == 0
    assert "stateDiagram-v2" in out and "mariadb-promote-survivor" in out
    assert 'state "promote" as promote' in out and "[*] --> observe" in out
    assert "promote --> repoint-replicas: ok | skipped" in out and "promote --> failed: failed" in out


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=yaml_chars)
def test_any_runbook_text_gives_a_clear_answer(tmp_path: Path, junk: str) -> None:
    code, out = cli("runbook", "show", write(tmp_path, junk, "fuzz-rb.yaml"))
    assert code in (0, 2)
    assert "internal error" not in out
