"""Proxies and fencing without I/O: HAProxy's runtime API answers read, the commands that
switch a write backend or readmit a member, and which fence comes first."""

from __future__ import annotations

from pathlib import Path

import pytest

from drengine.datastores.mysql_fencing import FenceAttempt, Fencing, MemberFence
from drengine.datastores.mysql_steps import split_brain_risks
from drengine.datastores.mysql_traffic import readmit_changes, switch_changes
from drengine.errors import CommandFailed
from drengine.haproxy import ProxyServer, ProxyView, SimProxy, parse_servers_state, parse_sessions, shell_command
from drengine.inventory import Cluster, FenceMethod

CLUSTER = Cluster.model_validate({
    "name": "c", "kind": "mariadb",
    "members": [{"name": n, "port": 3306 + i} for i, n in enumerate(("db1", "db2", "db3"))],
    "proxies": [{
        "name": "hap", "api": {"socket": "/run/haproxy/admin.sock"}, "frontend": {"port": 3307},
        "backends": [{"name": "w", "servers": {"db1": "s1", "db2": "s2", "db3": "s3"}},
                     {"name": "r", "role": "read", "servers": {"db1": "s1", "db2": "s2", "db3": "s3"}}],
    }],
})
PROXY = CLUSTER.proxies[0]

# As HAProxy 2.6 answered on this machine: s2 was configured `disabled` (admin 5) then made ready
# (admin 4: the configuration bit stays), s3 is still disabled.
SHOW_SERVERS_STATE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 w 1 s1 127.0.0.1 0 1 1 1 1 8 2 0 6 0 0 0 - 3306 - 0 0 - - 0
3 w 2 s2 127.0.0.1 2 4 1 1 0 1 0 1 6 0 0 0 - 3307 - 0 0 - - 0
3 w 3 s3 127.0.0.1 0 5 1 1 1 1 0 0 14 0 0 0 - 3308 - 0 0 - - 0
4 r 1 s1 127.0.0.1 2 8 1 1 0 1 0 1 6 0 0 0 - 3306 - 0 0 - - 0

"""


def test_servers_state_is_read_by_its_header_and_admin_bits() -> None:
    servers = parse_servers_state(SHOW_SERVERS_STATE, PROXY)
    got = {(s.backend, s.member): (s.admin, s.health) for s in servers}
    assert got == {("w", "db1"): ("maint", "down"), ("w", "db2"): ("ready", "up"), ("w", "db3"): ("maint", "down"),
                   ("r", "db1"): ("drain", "up")}
    with pytest.raises(CommandFailed, match="without its header line"):
        parse_servers_state("Unknown command\n", PROXY)


def test_sessions_come_from_show_stat() -> None:
    stat = "# pxname,svname,qcur,qmax,scur,smax\nw,FRONTEND,,,3,5\nw,s1,0,0,2,4\nw,BACKEND,0,0,2,4\n"
    assert parse_sessions(stat)[("w", "s1")] == 2


def test_runtime_commands_are_shown_as_an_operator_would_type_them() -> None:
    assert shell_command(PROXY, "set server w/s2 state ready").text == \
        "echo 'set server w/s2 state ready' | socat -t 2 stdio UNIX-CONNECT:/run/haproxy/admin.sock"


def view(**admin: str) -> ProxyView:
    """A view of the write backend from member=state pairs, plus the read backend all ready."""
    servers = [ProxyServer(backend="w", server=f"s{n[-1]}", member=n, role="write", admin=a, health="up")
               for n, a in admin.items()]
    servers += [ProxyServer(backend="r", server=f"s{n[-1]}", member=n, role="read", admin="ready", health="up")
                for n in admin]
    return ProxyView(proxy="hap", servers=servers)


def test_switch_makes_the_new_primary_ready_first_then_the_others_standby() -> None:
    changes = switch_changes(CLUSTER, [view(db1="ready", db2="maint", db3="maint")], "db2", frozenset({"db1"}))
    assert [c.command for c in changes] == ["set server w/s2 state ready", "set server w/s1 state maint",
                                            "set server r/s1 state maint"]
    # Already switched: nothing left to send.
    assert switch_changes(CLUSTER, [view(db1="maint", db2="ready", db3="maint")], "db2", frozenset()) == []


def test_a_server_put_in_maint_with_open_sessions_gets_them_shut_down() -> None:
    busy = view(db1="ready", db2="maint", db3="maint")
    busy.servers[0] = busy.servers[0].model_copy(update={"sessions": 3})
    commands = [c.command for c in switch_changes(CLUSTER, [busy], "db2", frozenset({"db1"}))]
    assert "shutdown sessions server w/s1" in commands


def test_readmit_follows_the_inventory() -> None:
    ready = CLUSTER.model_copy(update={"proxies": [PROXY.model_copy(update={"rejoined": "ready"})]})
    current = ProxyView(proxy="hap", servers=[
        ProxyServer(backend="w", server="s1", member="db1", role="write", admin="maint", health="up"),
        ProxyServer(backend="r", server="s1", member="db1", role="read", admin="maint", health="up")])
    assert [c.command for c in readmit_changes(ready, [current], ["db1"], "db2")] == ["set server r/s1 state ready"]
    assert readmit_changes(CLUSTER, [current], ["db1"], "db2") == []  # default: stays in maint


def test_simulated_haproxy_refuses_what_the_real_one_refuses() -> None:
    sim = SimProxy(name="hap", admin={"w": {"s1": "ready", "s2": "maint", "s3": "maint"}})
    with pytest.raises(CommandFailed, match="No such server"):
        sim.apply(PROXY, "set server w/zz state ready")
    with pytest.raises(CommandFailed, match="expects 'ready', 'drain' and 'maint'"):
        sim.apply(PROXY, "set server w/s1 state up")
    sim.apply(PROXY, "set server w/s1 state maint")
    assert sim.writer(PROXY, {"db1": True, "db2": True}) is None
    sim.apply(PROXY, "set server w/s2 state ready")
    assert sim.writer(PROXY, {"db1": True, "db2": True}) == "db2"


def test_default_fence_order_and_split_brain_risk() -> None:
    assert CLUSTER.fence_methods() == (FenceMethod.SQL, FenceMethod.SERVICE, FenceMethod.SIGNAL, FenceMethod.PROXY)
    failed = Fencing(members=[MemberFence(member="db1", state="hung", attempts=[
        FenceAttempt(member="db1", method="sql", outcome="skipped", detail="hung"),
        FenceAttempt(member="db1", method="signal", outcome="failed", detail="no route to host")])])
    assert failed.unsafe == ["db1"]
    assert split_brain_risks(failed, [])[0].startswith("split brain: db1 is neither confirmed dead nor fenced")
    dead = Fencing(members=[MemberFence(member="db1", state="hung", attempts=[
        FenceAttempt(member="db1", method="signal", outcome="dead", detail="pid 7 is gone")])])
    assert split_brain_risks(dead, []) == []
    # No fencing step ran: judged from what the probe saw; a refused connection is not running.
    assert split_brain_risks(None, [("db1", "down", "refused")]) == []
    assert split_brain_risks(None, [("db1", "unreachable", "")])


def test_a_proxy_reached_over_a_become_host_is_journaled_with_its_sudo(tmp_path: Path) -> None:
    """The journal shows the line as sent: over a host with `become: true`, under sudo."""
    from drengine.haproxy import statement
    from drengine.inventory import load_inventory

    path = tmp_path / "inv.yaml"
    path.write_text(
        "hosts:\n  lb1: {address: 127.0.0.5, become: true, ssh: {user: ops}}\n"
        "clusters:\n  c:\n    kind: mariadb\n    members: [{name: db1, port: 3306}]\n"
        "    proxies:\n      - name: hap\n        host: lb1\n        api: {socket: /run/haproxy/admin.sock}\n"
        "        frontend: {port: 3307}\n        backends: [{name: w, servers: {db1: s1}}]\n")
    cluster = load_inventory(path).cluster("c")
    shown = statement(cluster, cluster.proxies[0], "set server w/s1 state maint").text
    assert shown.startswith("sudo -n sh -c ") and "socat" in shown and "set server w/s1 state maint" in shown
    plain = statement(CLUSTER, PROXY, "set server w/s1 state maint").text
    assert plain.startswith("echo ") and "sudo" not in plain
