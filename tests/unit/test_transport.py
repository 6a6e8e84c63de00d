"""Transport unit tests: template rendering and quoting, LocalTransport timeouts, fan-out."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drengine.clock import wait_until
from drengine.errors import CommandFailed, ConnectError, InputError, ProbeTimeout
from drengine.faults import signal_member
from drengine.inventory import Cluster, Host, Inventory, Member, SSHSettings, Transport
from drengine.transport import (
    LocalTransport,
    MemberTransports,
    ShellCommand,
    SSHTransport,
    command_text,
    member_transport,
    render_service,
    render_template,
    run_on_hosts,
    transport_for,
)

pytestmark = pytest.mark.unit

# Any text a hostile inventory could put in a name or path, except NUL (no argv can hold it).
hostile = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)


@given(hostile)
def test_rendered_value_stays_one_argument(value: str) -> None:
    rendered = render_template("mariadbd --defaults-file={data_dir}/my.cnf --name {name}", name=value, data_dir=value)
    assert shlex.split(rendered.text) == ["mariadbd", f"--defaults-file={value}/my.cnf", "--name", value]


@settings(max_examples=40, deadline=None)
@given(hostile)
def test_hostile_value_reaches_the_command_unchanged(value: str) -> None:
    # Through a real /bin/sh: `$(...)`, backticks, `;`, quotes and newlines stay data.
    result = LocalTransport().run(render_template("printf %s {name}", name=value), timeout=10)
    assert result.exit_status == 0, result.stderr
    assert result.stdout == value


@settings(max_examples=40, deadline=None)
@given(st.lists(hostile, min_size=1, max_size=4))
def test_argv_is_quoted_element_by_element(args: list[str]) -> None:
    argv = ["printf", "%s\\0", *args]
    assert shlex.split(command_text(argv)) == argv
    # The exact line SSH would send, run by a shell, prints every argument intact.
    result = LocalTransport().run(ShellCommand(command_text(argv)), timeout=10)
    assert result.stdout.split("\0")[:-1] == args


def test_injection_attempt_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    result = LocalTransport().run(render_template("echo {name}", name=f"x; touch {marker}; $(touch {marker})"))
    assert result.ok
    assert not marker.exists()


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("start {nmae}", "{nmae}, which drengine does not know; known placeholders: {name}"),
        ("start {name:>10}", "plain {name}"),
        ("start {name!r}", "plain {name}"),
        ("start {name.upper}", "{name.upper}, which drengine does not know"),
        ("start '{name}'", "inside ' quotes"),
        ('start "{name}"', 'inside " quotes'),
        ("start {name", "malformed"),
        ("start 'unterminated {{x}}", "unterminated ' quote"),
    ],
)
def test_bad_templates_are_refused_clearly(template: str, fragment: str) -> None:
    with pytest.raises(InputError) as err:
        render_template(template, name="g1")
    assert fragment in str(err.value)


def test_template_literals_and_quoted_text_outside_placeholders() -> None:
    rendered = render_template("sh -c 'echo {{literal}}' && start {name} --port={port}", name="g 1", port=3316)
    assert rendered.text == "sh -c 'echo {literal}' && start 'g 1' --port=3316"


def test_nul_and_bare_strings_are_refused() -> None:
    with pytest.raises(InputError, match="NUL"):
        render_template("x {name}", name="a\x00b")
    with pytest.raises(InputError, match="bare string"):
        LocalTransport().run("echo hi")  # a str type-checks as Sequence[str]: refused at run time
    with pytest.raises(InputError, match="empty"):
        LocalTransport().run([])


def test_local_result_fields() -> None:
    result = LocalTransport("db1").run(["sh", "-c", "echo out; echo err >&2; exit 4"])
    assert (result.host, result.exit_status, result.stdout, result.stderr) == ("db1", 4, "out\n", "err\n")
    assert result.command == "sh -c 'echo out; echo err >&2; exit 4'"
    with pytest.raises(CommandFailed, match="exited with status 4: err"):
        result.check()


def test_missing_program_is_exit_127() -> None:
    result = LocalTransport().run(["/nonexistent/drengine-test-binary"])
    assert result.exit_status == 127


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_local_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # The shell starts a background child and waits: killing only the shell would leave it.
    command = render_template("sleep 30 & echo $! > {pidfile}; wait", pidfile=str(pidfile))
    started = time.monotonic()
    with pytest.raises(ProbeTimeout, match="did not finish within 0.5 s"):
        LocalTransport("slowhost").run(command, timeout=0.5)
    assert time.monotonic() - started < 4
    child = int(pidfile.read_text())
    assert wait_until(lambda: not _alive(child), 2, interval=0.02), "the background child survived the timeout"


def test_read_file(tmp_path: Path) -> None:
    target = tmp_path / "grastate.dat"
    target.write_text("seqno: 5\n")
    assert LocalTransport().read_file(str(target)) == "seqno: 5\n"
    with pytest.raises(CommandFailed, match="cannot read"):
        LocalTransport().read_file(str(tmp_path / "missing"))


def test_transport_for_picks_by_inventory() -> None:
    local = transport_for(Host(address="127.0.0.1", transport=Transport.LOCAL), "here")
    assert isinstance(local, LocalTransport) and local.name == "here"
    remote = transport_for(Host(address="127.0.0.9", ssh=SSHSettings(port=2222)), "there")
    assert isinstance(remote, SSHTransport) and remote.target == "root@127.0.0.9:2222"


def _inventory(pid_file: str) -> tuple[Inventory, Cluster]:
    cluster = Cluster(name="db", kind="mariadb", members=[
        Member(name="here", host="this", pid_file=pid_file),
        Member(name="loopback", address="127.0.0.1", pid_file=pid_file),
        Member(name="elsewhere", host="far", pid_file=pid_file),
    ])
    inventory = Inventory(hosts={"this": Host(address="127.0.0.1", transport=Transport.LOCAL),
                                 "far": Host(address="10.9.9.9")}, clusters={"db": cluster})
    return inventory, cluster


def test_a_member_host_is_the_one_its_inventory_names_never_a_guess(tmp_path: Path) -> None:
    inventory, cluster = _inventory(str(tmp_path / "pid"))
    here = member_transport(inventory, "db", cluster.member("here"), "signal it")
    assert isinstance(here, LocalTransport) and here.name == "this"
    assert isinstance(member_transport(inventory, "db", cluster.member("elsewhere"), "signal it"), SSHTransport)
    # 127.0.0.1 without `host:` may be a tunnel to another machine: refused, naming the member and the field.
    with pytest.raises(ConnectError, match=r"cluster db: member loopback has no `host:` in the inventory, so drengine "
                                           r"cannot signal it: .*Add `host: NAME` to the member"):
        member_transport(inventory, "db", cluster.member("loopback"), "signal it")
    with pytest.raises(ConnectError, match="runs on host 'this', which the inventory does not define under `hosts:`"):
        member_transport(None, "db", cluster.member("here"), "signal it")
    hosts = MemberTransports(inventory, "db")
    assert hosts.of(cluster.member("here"), "x") is hosts.of(cluster.member("here"), "y")
    hosts.close()


def test_a_drill_fault_never_signals_a_local_pid_for_a_member_without_host(tmp_path: Path) -> None:
    import subprocess

    bystander = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = tmp_path / "mysqld.pid"
        pid_file.write_text(f"{bystander.pid}\n")
        inventory, cluster = _inventory(str(pid_file))
        with pytest.raises(ConnectError, match="member loopback has no `host:`"):
            signal_member(inventory, cluster, cluster.member("loopback"), "KILL")
        assert bystander.poll() is None, "a process on this machine was signalled for a member with no host"
        assert signal_member(inventory, cluster, cluster.member("here"), "KILL").startswith(f"kill -KILL {bystander.pid}")
        assert bystander.wait(timeout=5) == -9
    finally:
        bystander.kill()
        bystander.wait()


def test_one_service_renderer_with_the_datastores_data_dir_default() -> None:
    template = {"start": "start {name} --port {port} --datadir {data_dir}", "stop": "stop {name}"}
    mariadb = Cluster.model_validate({"name": "m", "kind": "mariadb", "service": template,
                                      "members": [{"name": "db1", "port": 3307}, {"name": "db2", "data_dir": "/srv/d b"}]})
    assert render_service(mariadb, mariadb.member("db1"), "start").text == "start db1 --port 3307 --datadir /var/lib/mysql"
    assert render_service(mariadb, mariadb.member("db2"), "start").text == "start db2 --port 3306 --datadir '/srv/d b'"
    assert render_service(mariadb, mariadb.member("db1"), "status", default="systemctl is-active {name}").text == \
        "systemctl is-active db1"
    with pytest.raises(InputError, match=r"cluster m has no `service: recover:` command in the inventory; drengine needs "
                                         r"it to recover db1 \(e.g. `galera_recovery`\)"):
        render_service(mariadb, mariadb.member("db1"), "recover", example="galera_recovery")
    ceph = Cluster.model_validate({"name": "c", "kind": "ceph", "service": template, "members": [{"name": "osd.0"}]})
    assert render_service(ceph, ceph.member("osd.0"), "stop").text == "stop osd.0"
    with pytest.raises(InputError, match=r"uses \{data_dir\}, but member osd.0 has no `data_dir:` in the inventory"):
        render_service(ceph, ceph.member("osd.0"), "start")


def test_fan_out_keeps_every_host_and_bounds_a_slow_one() -> None:
    hosts = {f"h{i}": Host(address="127.0.0.1", transport=Transport.LOCAL) for i in range(6)}
    started = time.monotonic()
    results = run_on_hosts(hosts, ShellCommand("sleep 0.2"), max_parallel=3, timeout=5)
    assert all(not isinstance(r, Exception) and r.ok for r in results.values())
    assert time.monotonic() - started < 2.5  # two rounds of 0.2 s, not six

    started = time.monotonic()
    hung = run_on_hosts({"stuck": LocalTransport("stuck"), "fine": LocalTransport("fine")}, ShellCommand("sleep 30"), timeout=0.5)
    assert isinstance(hung["stuck"], ProbeTimeout) and isinstance(hung["fine"], ProbeTimeout)
    assert time.monotonic() - started < 4


def test_fan_out_reports_unreachable_hosts_per_host() -> None:
    # Port 1 on loopback: nothing listens, the refusal is immediate.
    dead = Host(address="127.0.0.1", ssh=SSHSettings(port=1, connect_timeout=1))
    results = run_on_hosts([("dead", dead), ("alive", Host(address="127.0.0.1", transport=Transport.LOCAL))], ["true"])
    assert isinstance(results["dead"], ConnectError)
    assert "connection refused" in str(results["dead"])
    alive = results["alive"]
    assert not isinstance(alive, Exception) and alive.ok
    assert list(results) == ["dead", "alive"]


def test_duplicate_host_names_are_refused() -> None:
    with pytest.raises(InputError, match="unique"):
        run_on_hosts([("a", LocalTransport()), ("a", LocalTransport())], ["true"])


def test_environment_is_not_a_shell_for_argv() -> None:
    result = LocalTransport().run(["echo", "$HOME", "`id`"])
    assert result.stdout == "$HOME `id`\n"
    assert os.environ.get("HOME")  # sanity: there was something to expand
