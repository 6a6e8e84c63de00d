"""Galera lab: a real three-node MariaDB Galera cluster on loopback (g1 g2 g3), for drills
and lab tests, plus the faults and probes those need (kill, hang, grastate.dat,
`--wsrep-recover`).

Every mariadbd is started detached through LabDir.spawn and recorded in lab.json, whoever
starts it: the lab itself, a test, or drengine running the inventory's service templates
over a host transport. The templates call `drengine lab node start|stop|status galera NAME`
(this module's `node_*` functions), so a node started by a runbook is still found and stopped
by `lab down`.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import signal
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drengine.clock import wait_until
from drengine.datastores.galera.state import Grastate, parse_grastate, parse_recovered
from drengine.errors import CommandFailed
from drengine.lab import haproxy
from drengine.lab.procs import (
    LabDir,
    LabError,
    LabProcess,
    NodeStart,
    drengine_command,
    ensure_ports_free,
    is_ours,
    merge_inventory,
    signal_process,
    template_literal,
)
from drengine.lab.ssh import lab_lock  # the one lab.json lock (procs.py has none)

if TYPE_CHECKING:
    from drengine.datastores.mysql_pool import Connection

KIND = "galera"
CLUSTER = "lab-galera"
NODE_NAMES = ("g1", "g2", "g3")
MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = "/usr/bin/mariadb-install-db"
PROVIDER = "/usr/lib/galera/libgalera_smm.so"
RUN_AS = "mysql"
RUNS_AS = RUN_AS  # read by `drengine lab up` to check the lab directory before anything starts
# Default failure detection takes about 6 s; these bring it to about 3 s. keepalive_period
# must stay below a third of suspect_timeout or mariadbd refuses to start.
FAST_FAILURE_DETECTION = (
    "evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S;evs.inactive_timeout=PT3S;evs.inactive_check_period=PT0.5S"
)
SYNC_TIMEOUT = 90.0
APP_USER = "app"  # what applications (and drill canaries) use through the proxy
PROXY_PORT_OFFSET = 100  # HAProxy's write and read frontends: the first node's port + 100 and + 101
# AF_UNIX paths are limited to 107 bytes; a deep lab directory would make mariadbd fail obscurely.
MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class NodeSpec:
    name: str
    port: int  # MariaDB client port
    galera_port: int  # gmcast (group communication)
    ist_port: int
    sst_port: int


def node_specs(port_base: int = 3316) -> list[NodeSpec]:
    return [NodeSpec(name, port_base + i, 4567 + 10 * i, 4568 + 10 * i, 4444 + 10 * i) for i, name in enumerate(NODE_NAMES)]


# --------------------------------------------------------------------------- paths and files


def galera_dir(lab: LabDir) -> Path:
    return lab.path("galera")


def node_dir(lab: LabDir, name: str) -> Path:
    return galera_dir(lab) / name


def config_file(lab: LabDir, name: str) -> Path:
    return node_dir(lab, name) / "my.cnf"


def data_dir(lab: LabDir, name: str) -> Path:
    return node_dir(lab, name) / "data"


def password_file(lab: LabDir) -> Path:
    return galera_dir(lab) / "root.password"


def app_password_file(lab: LabDir) -> Path:
    return galera_dir(lab) / f"{APP_USER}.password"


def _state_file(lab: LabDir) -> Path:
    return galera_dir(lab) / "galera.json"


def _load_specs(lab: LabDir) -> dict[str, NodeSpec]:
    try:
        raw = json.loads(_state_file(lab).read_text())
    except (OSError, ValueError):
        raise LabError(f"no Galera lab in {lab.root} (missing {_state_file(lab)}); run the Galera lab `up` first") from None
    return {n["name"]: NodeSpec(**n) for n in raw["nodes"]}


def spec_of(lab: LabDir, name: str) -> NodeSpec:
    specs = _load_specs(lab)
    if name not in specs:
        raise LabError(f"the Galera lab has no node {name!r}; nodes: {sorted(specs)}")
    return specs[name]


def _password(lab: LabDir) -> str:
    return password_file(lab).read_text().strip()


def _write_config(lab: LabDir, spec: NodeSpec, specs: list[NodeSpec]) -> None:
    ndir = node_dir(lab, spec.name)
    peers = ",".join(f"127.0.0.1:{s.galera_port}" for s in specs)
    provider_options = (
        f"gmcast.listen_addr=tcp://127.0.0.1:{spec.galera_port};ist.recv_addr=127.0.0.1:{spec.ist_port};"
        f"gcache.size=32M;{FAST_FAILURE_DETECTION}"
    )
    # No log-error: mariadbd then logs to stderr, which LabDir.spawn sends to the node's log
    # file, and `--wsrep-recover` run through a host transport prints its position on stderr.
    lines = [
        "[mysqld]",
        f"user={RUN_AS}",
        f"datadir={ndir / 'data'}",
        f"socket={ndir / 'mariadbd.sock'}",
        f"pid-file={ndir / 'mariadbd.pid'}",
        # Its own tmpdir: another mariadbd starting with tmpdir=/tmp removes #sql-temptable files.
        f"tmpdir={ndir / 'tmp'}",
        f"port={spec.port}",
        "bind-address=127.0.0.1",
        "skip-name-resolve",
        "innodb_buffer_pool_size=32M",
        "innodb_log_file_size=16M",
        "performance_schema=OFF",
        "binlog_format=ROW",
        "default_storage_engine=InnoDB",
        "innodb_autoinc_lock_mode=2",
        "wsrep_on=ON",
        f"wsrep_provider={PROVIDER}",
        f"wsrep_cluster_name={CLUSTER}",
        f"wsrep_cluster_address=gcomm://{peers}",
        f"wsrep_node_name={spec.name}",
        f"wsrep_node_address=127.0.0.1:{spec.galera_port}",
        # What clients use, as every node reports it (wsrep_incoming_addresses); AUTO otherwise.
        f"wsrep_node_incoming_address=127.0.0.1:{spec.port}",
        f'wsrep_provider_options="{provider_options}"',
        "wsrep_sst_method=rsync",
        f"wsrep_sst_receive_address=127.0.0.1:{spec.sst_port}",
        "",
    ]
    config_file(lab, spec.name).write_text("\n".join(lines))


def _check_reachable_by_mysql(path: Path) -> None:
    """mariadbd runs as mysql: every parent directory must let it through (pytest's tmp_path does not)."""
    mysql_uid = pwd.getpwnam(RUN_AS).pw_uid
    for parent in [path, *path.parents]:
        st = parent.stat()
        if st.st_uid != mysql_uid and not st.st_mode & stat.S_IXOTH:
            raise LabError(
                f"{parent} (mode {stat.filemode(st.st_mode)}) does not let the {RUN_AS} user through, and the Galera "
                f"nodes run as {RUN_AS} (as root, rsync SST fails); use a lab directory whose parents are "
                f"world-searchable (e.g. chmod o+x {parent}, or a lab directory directly under /tmp)"
            )


def _chown_tree(path: Path) -> None:
    pw = pwd.getpwnam(RUN_AS)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for entry in [*dirs, *files]:
            os.chown(os.path.join(root, entry), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def _install_db(lab: LabDir, name: str) -> None:
    if (data_dir(lab, name) / "mysql").is_dir():
        return
    result = subprocess.run(
        [
            INSTALL_DB,
            f"--defaults-file={config_file(lab, name)}",
            f"--user={RUN_AS}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=False,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    if result.returncode != 0:
        raise LabError(f"mariadb-install-db failed for {name}: {(result.stderr or result.stdout)[-1500:]}")


# --------------------------------------------------------------------------- probes


def _connect(spec: NodeSpec, password: str | None, timeout: float = 2.0) -> Connection:
    import pymysql

    # A SIGSTOPped node still completes the TCP handshake: only read/write timeouts bound a probe.
    return pymysql.connect(
        host="127.0.0.1",
        port=spec.port,
        user="root",
        password=password or "",
        connect_timeout=timeout,
        read_timeout=timeout,
        write_timeout=timeout,
        autocommit=True,
    )


def connect(lab: LabDir, name: str, timeout: float = 2.0) -> Connection:
    """A pymysql connection to a node as the lab's root user (caller closes it)."""
    return _connect(spec_of(lab, name), _password(lab), timeout)


def wsrep_status(lab: LabDir, name: str, timeout: float = 2.0) -> dict[str, str]:
    """The node's `wsrep_%` status variables (read with wsrep_sync_wait=0 so a non-Primary node answers)."""
    conn = connect(lab, name, timeout)
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION wsrep_sync_wait=0")
            cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
            return {str(k): str(v) for k, v in cur.fetchall()}
    finally:
        conn.close()


def _probe(lab: LabDir, name: str) -> dict[str, str] | None:
    import pymysql

    try:
        return wsrep_status(lab, name, timeout=1.0)
    except (pymysql.err.MySQLError, OSError):
        return None


def is_synced(status: dict[str, str] | None, cluster_size: int | None = None) -> bool:
    if status is None:
        return False
    ok = status.get("wsrep_local_state_comment") == "Synced" and status.get("wsrep_cluster_status") == "Primary"
    if cluster_size is not None:
        ok = ok and status.get("wsrep_cluster_size") == str(cluster_size)
    return ok


def wait_synced(lab: LabDir, name: str, timeout: float = SYNC_TIMEOUT, cluster_size: int | None = None) -> dict[str, str]:
    """Wait until the node is Synced in a Primary component; fail early (with its log) if it died."""
    proc = lab.find(KIND, name)
    last: dict[str, str] | None = None

    def ready() -> bool:
        nonlocal last
        if proc is not None and not is_ours(proc):
            return True
        last = _probe(lab, name)
        return is_synced(last, cluster_size)

    finished = wait_until(ready, timeout, interval=0.2)
    if proc is not None and not is_ours(proc):
        raise LabError(f"Galera node {name} exited while starting; its log ends with:\n{_log_tail(lab, name)}")
    if not finished or last is None:
        state = (
            "no answer"
            if last is None
            else f"{last.get('wsrep_local_state_comment')} in a {last.get('wsrep_cluster_status')} component of size "
            f"{last.get('wsrep_cluster_size')}"
        )
        raise LabError(
            f"Galera node {name} was not Synced within {timeout:g} s (last seen: {state}); "
            f"its log ends with:\n{_log_tail(lab, name)}"
        )
    return last


def _log_tail(lab: LabDir, name: str, size: int = 2000) -> str:
    log = node_dir(lab, name) / "mariadbd.log"
    try:
        return log.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"


def read_grastate(lab: LabDir, name: str) -> Grastate:
    """The saved state in the node's grastate.dat (seqno -1 after a crash)."""
    path = data_dir(lab, name) / "grastate.dat"
    try:
        return parse_grastate(path.read_text(), name)
    except OSError as exc:
        raise LabError(f"cannot read {path}: {exc.strerror}") from None
    except CommandFailed as exc:
        raise LabError(str(exc)) from None


def mark_safe_to_bootstrap(lab: LabDir, name: str) -> None:
    """Set `safe_to_bootstrap: 1` in grastate.dat, as an operator does on the node chosen to bootstrap.

    Galera sets it only on the last node to leave cleanly; after a crash of every node no
    grastate.dat has it, and `--wsrep-new-cluster` refuses to start until someone decides.
    """
    path = data_dir(lab, name) / "grastate.dat"
    text = path.read_text()
    text = re.sub(r"^safe_to_bootstrap:.*$", "safe_to_bootstrap: 1", text, flags=re.MULTILINE)
    path.write_text(text)


def recover_argv(lab: LabDir, name: str) -> list[str]:
    return [MARIADBD, f"--defaults-file={config_file(lab, name)}", "--wsrep-recover"]


def wsrep_recover(lab: LabDir, name: str, timeout: float = 120.0) -> tuple[str, int]:
    """Run `mariadbd --wsrep-recover` on a stopped node and return its (uuid, seqno)."""
    proc = lab.find(KIND, name)
    if proc is not None and is_ours(proc):
        raise LabError(f"Galera node {name} is running (pid {proc.pid}); --wsrep-recover needs it stopped")
    result = subprocess.run(
        recover_argv(lab, name), check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout
    )
    with open(node_dir(lab, name) / "mariadbd.log", "a") as log:
        log.write(result.stderr)
    return parse_recovered_position(result.stderr + result.stdout, name)


def parse_recovered_position(output: str, name: str = "node") -> tuple[str, int]:
    """Find `WSREP: Recovered position: uuid:seqno` in mariadbd --wsrep-recover output."""
    try:
        found = parse_recovered(output, name)
    except CommandFailed as exc:
        raise LabError(str(exc)) from None
    return found.uuid, found.seqno


# --------------------------------------------------------------------------- start, stop, faults


def start_node(
    lab: LabDir,
    name: str,
    bootstrap: bool = False,
    start_position: str | None = None,
    recover: bool = False,
    wait: bool = True,
    timeout: float = SYNC_TIMEOUT,
) -> LabProcess:
    """Start one node detached (recorded in lab.json); by default wait until it is Synced.

    bootstrap starts a new Primary component from this node (`--wsrep-new-cluster`).
    start_position (`uuid:seqno`, from --wsrep-recover) keeps the node's place in the
    cluster history: without it a crashed node (grastate seqno -1) rejoins by full SST,
    and a crashed node bootstrapped with --wsrep-new-cluster starts a NEW history (new
    cluster UUID, position -1), forcing full SST on every other node. recover=True finds
    the position first when grastate.dat lacks it, as the packaged systemd unit does.
    """
    spec_of(lab, name)
    existing = lab.find(KIND, name)
    if existing is not None and is_ours(existing):
        raise LabError(f"Galera node {name} is already running (pid {existing.pid})")
    grastate = data_dir(lab, name) / "grastate.dat"
    if start_position is None and recover and grastate.exists() and read_grastate(lab, name).seqno == -1:
        uuid, seqno = wsrep_recover(lab, name)
        start_position = f"{uuid}:{seqno}"
    argv = [MARIADBD, f"--defaults-file={config_file(lab, name)}"]
    if bootstrap:
        argv.append("--wsrep-new-cluster")
    if start_position is not None:
        if not re.fullmatch(r"[0-9a-f-]{36}:-?\d+", start_position):
            raise LabError(f"start position {start_position!r} is not uuid:seqno")
        argv.append(f"--wsrep-start-position={start_position}")
    log = node_dir(lab, name) / "mariadbd.log"
    with lab_lock(lab):
        proc = lab.spawn(KIND, name, argv, log=log)
    if wait:
        wait_synced(lab, name, timeout)
    return proc


def _running(lab: LabDir, name: str) -> LabProcess:
    proc = lab.find(KIND, name)
    if proc is None or not is_ours(proc):
        raise LabError(f"Galera node {name} is not running (not started by this lab, or already stopped)")
    return proc


def kill_node(lab: LabDir, name: str) -> None:
    """Crash a node (SIGKILL): grastate.dat keeps seqno -1."""
    proc = _running(lab, name)
    signal_process(proc, signal.SIGCONT)  # a hung node must die now, not on resume
    signal_process(proc, signal.SIGKILL)
    with lab_lock(lab):
        lab.forget(proc)


def hang_node(lab: LabDir, name: str) -> None:
    """Freeze a node (SIGSTOP): it still accepts TCP connections but answers nothing."""
    signal_process(_running(lab, name), signal.SIGSTOP)


def is_running(lab: LabDir, name: str) -> bool:
    proc = lab.find(KIND, name)
    return proc is not None and is_ours(proc)


def continue_node(lab: LabDir, name: str) -> None:
    signal_process(_running(lab, name), signal.SIGCONT)


def stop_node(lab: LabDir, name: str, timeout: float = 30.0) -> None:
    """Clean shutdown (SIGTERM): the node leaves the cluster and saves its seqno."""
    _stop(lab, [p for p in lab.processes() if p.kind == KIND and p.name == name], timeout)


def _stop(lab: LabDir, procs: list[LabProcess], timeout: float) -> None:
    # All nodes at once: stopping one by one makes each survivor wait for failure detection.
    live = [p for p in procs if is_ours(p)]
    for proc in live:
        for sig in (signal.SIGCONT, signal.SIGTERM):  # SIGCONT first: a hung node ignores SIGTERM
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
    if not wait_until(lambda: not any(is_ours(p) for p in live), timeout):
        for proc in live:
            if is_ours(proc):
                os.kill(proc.pid, signal.SIGKILL)
        wait_until(lambda: not any(is_ours(p) for p in live), 10.0)
    with lab_lock(lab):
        for proc in procs:
            try:
                os.waitpid(proc.pid, os.WNOHANG)
            except ChildProcessError:
                pass
            lab.forget(proc)


def down(lab: LabDir, timeout: float = 30.0) -> list[str]:
    """Stop every Galera node recorded in lab.json, however it was started; returns their names."""
    procs = [p for p in lab.processes() if p.kind == KIND]
    _stop(lab, procs, timeout)
    return [p.name for p in procs]


# --------------------------------------------------------------------------- up


def service_templates(lab: LabDir) -> dict[str, str]:
    """Plain shell templates that work through any host transport on this machine."""
    lab_dir = template_literal(str(lab.root))
    gdir = template_literal(str(galera_dir(lab)))

    def node(action: str, *flags: str) -> str:
        return " ".join([drengine_command("lab", "node", action, KIND), "{name}", *flags, "--lab-dir", lab_dir])

    return {
        "start": node("start"),
        "bootstrap": node("start", "--bootstrap"),
        "stop": node("stop"),
        "status": node("status"),
        "recover": f"{MARIADBD} --defaults-file={gdir}/{{name}}/my.cnf --wsrep-recover",
    }


def _set_root_password(spec: NodeSpec, password: str, app_password: str) -> None:
    conn = _connect(spec, None, timeout=5.0)
    try:
        with conn.cursor() as cur:
            # Replicated to the joiners by SST and TOI; TCP clients arrive as 127.0.0.1 (skip-name-resolve).
            # install-db (normal auth) creates several password-less root accounts: give each the password.
            cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
            # Host-name accounts (root@<hostname>) are ignored under skip-name-resolve and cannot be altered.
            cur.execute("SELECT Host FROM mysql.global_priv WHERE User = 'root' AND Host IN ('localhost', '127.0.0.1', '::1')")
            for (host,) in cur.fetchall():
                cur.execute("ALTER USER 'root'@%s IDENTIFIED BY %s", (host, password))
            cur.execute(f"CREATE USER IF NOT EXISTS '{APP_USER}'@'127.0.0.1' IDENTIFIED BY %s", (app_password,))
            cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON drengine.* TO '{APP_USER}'@'127.0.0.1'")
            cur.execute(f"CREATE USER IF NOT EXISTS '{haproxy.CHECK_USER}'@'127.0.0.1'")
    finally:
        conn.close()


def lab_ports(specs: list[NodeSpec]) -> list[tuple[str, str, int]]:
    """(what, address, port) the lab listens on: each node's client and group communication
    ports, and the proxy's frontends (IST and SST ports are opened only during a transfer)."""
    ports = [(f"galera {s.name} {label}", "127.0.0.1", port) for s in specs
             for label, port in (("client", s.port), ("group communication", s.galera_port))]
    first = specs[0].port + PROXY_PORT_OFFSET
    return [*ports, ("HAProxy write frontend", "127.0.0.1", first), ("HAProxy read frontend", "127.0.0.1", first + 1)]


def up(
    lab: LabDir,
    inventory_out: str | Path | None = None,
    port_base: int = 3316,
    hosts: list[str] | None = None,
) -> dict[str, object]:
    """Start the three-node cluster, wait until all are Synced in one component of size 3,
    and write the `lab-galera` cluster into the inventory. Returns the cluster entry and timings.
    """
    started = time.monotonic()
    if hosts is not None and len(hosts) < len(NODE_NAMES):
        raise LabError(f"the Galera lab needs {len(NODE_NAMES)} host names for its members, got {hosts}")
    running = [p.name for p in lab.processes() if p.kind == KIND and is_ours(p)]
    if running:
        raise LabError(f"Galera lab nodes {running} are already running in {lab.root}; run its `down` first")
    specs = node_specs(port_base)
    ensure_ports_free(lab, KIND, lab_ports(specs))
    gdir = galera_dir(lab)
    _check_reachable_by_mysql(gdir)
    socket_path = gdir / NODE_NAMES[0] / "mariadbd.sock"
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise LabError(f"the lab directory is too deep: {socket_path} exceeds the {MAX_SOCKET_PATH}-byte socket path limit")
    _state_file(lab).write_text(json.dumps({"nodes": [asdict(s) for s in specs]}, indent=1))
    pw_file = password_file(lab)
    if not pw_file.exists():
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(18) + "\n")
    os.chmod(pw_file, 0o600)
    password = _password(lab)
    app_file = app_password_file(lab)
    if not app_file.exists():
        app_file.write_text(secrets.token_urlsafe(18) + "\n")
    os.chmod(app_file, 0o600)

    for spec in specs:
        data_dir(lab, spec.name).mkdir(parents=True, exist_ok=True)
        (node_dir(lab, spec.name) / "tmp").mkdir(parents=True, exist_ok=True)
        _write_config(lab, spec, specs)
        _chown_tree(node_dir(lab, spec.name))
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        list(pool.map(lambda s: _install_db(lab, s.name), specs))
    installed = time.monotonic()

    first, *joiners = specs
    start_node(lab, first.name, bootstrap=True, wait=False)
    if not wait_until(lambda: _bootstrap_ready(lab, first), SYNC_TIMEOUT, interval=0.2):
        raise LabError(
            f"Galera node {first.name} did not come up as a new cluster; its log ends with:\n{_log_tail(lab, first.name)}"
        )
    if not _password_set(first, password):
        _set_root_password(first, password, app_file.read_text().strip())
    wait_synced(lab, first.name)
    bootstrapped = time.monotonic()
    # Joiners one after the other: the one donor serves a single rsync SST at a time anyway.
    for spec in joiners:
        start_node(lab, spec.name)
    for spec in specs:
        wait_synced(lab, spec.name, cluster_size=len(specs))
    proxy = lab_proxy(lab, specs)
    haproxy.start(lab, proxy)
    haproxy.wait_up(proxy, first.name)
    finished = time.monotonic()

    members = []
    for i, spec in enumerate(specs):
        member: dict[str, object] = {
            "name": spec.name,
            "address": "127.0.0.1",
            "port": spec.port,
            "data_dir": str(data_dir(lab, spec.name)),
            "pid_file": str(node_dir(lab, spec.name) / "mariadbd.pid"),
        }
        if hosts is not None:
            member["host"] = hosts[i]
        members.append(member)
    cluster = {
        "kind": "galera",
        "drill_target": True,
        "members": members,
        "credentials": {"user": "root", "password": {"file": str(pw_file)}},
        "timeouts": {"connect": 2.0, "read": 5.0, "catch_up": 30.0},
        "service": service_templates(lab),
        "proxies": [proxy.inventory({"user": APP_USER, "password": {"file": str(app_file)}})],
    }
    if inventory_out is not None:
        merge_inventory(inventory_out, {}, {CLUSTER: cluster})
    return {
        "cluster": {CLUSTER: cluster},
        "password_file": str(pw_file),
        "seconds": {
            "install_db": round(installed - started, 3),
            "bootstrap": round(bootstrapped - installed, 3),
            "joiners": round(finished - bootstrapped, 3),
            "total": round(finished - started, 3),
        },
    }


def lab_proxy(lab: LabDir, specs: list[NodeSpec]) -> haproxy.LabProxy:
    first = specs[0].port
    return haproxy.LabProxy(kind=KIND, directory=galera_dir(lab) / "haproxy",
                            members=tuple((s.name, s.port) for s in specs), primary=specs[0].name,
                            write_port=first + PROXY_PORT_OFFSET, read_port=first + PROXY_PORT_OFFSET + 1)


def _bootstrap_ready(lab: LabDir, spec: NodeSpec) -> bool:
    proc = lab.find(KIND, spec.name)
    if proc is None or not is_ours(proc):
        raise LabError(f"Galera node {spec.name} exited while bootstrapping; its log ends with:\n{_log_tail(lab, spec.name)}")
    import pymysql

    for password in (None, _password(lab)):  # fresh datadir: no password yet; re-run: already set
        try:
            _connect(spec, password, timeout=1.0).close()
            return True
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == 1045:
                continue
            return False
        except OSError:
            return False
    return False


def _password_set(spec: NodeSpec, password: str) -> bool:
    import pymysql

    try:
        _connect(spec, password, timeout=2.0).close()
        return True
    except pymysql.err.OperationalError:
        return False


# --------------------------------------------------------------------------- node commands
# What the inventory's service templates run (`drengine lab node start|stop|status galera NAME`),
# so their output is what the operator sees.

NODE_OPTIONS = frozenset({"--bootstrap", "--start-position", "--no-recover", "--timeout"})


def node_start(lab: LabDir, name: str, how: NodeStart) -> str:
    """Start a node detached and wait until it is Synced."""
    t0 = time.monotonic()
    proc = start_node(lab, name, bootstrap=how.bootstrap, start_position=how.start_position, recover=how.recover,
                      timeout=SYNC_TIMEOUT if how.timeout is None else how.timeout)
    status = wsrep_status(lab, name)
    return (f"{name}: started (pid {proc.pid}) and {status.get('wsrep_local_state_comment')} in a "
            f"{status.get('wsrep_cluster_status')} component of size {status.get('wsrep_cluster_size')} "
            f"after {time.monotonic() - t0:.1f} s")


def node_stop(lab: LabDir, name: str) -> str:
    stop_node(lab, name)
    return f"{name}: stopped"


def node_status(lab: LabDir, name: str) -> tuple[bool, str]:
    spec_of(lab, name)
    found = lab.find(KIND, name)
    if found is None or not is_ours(found):
        return False, f"{name}: not running"
    return True, f"{name}: running (pid {found.pid})"
