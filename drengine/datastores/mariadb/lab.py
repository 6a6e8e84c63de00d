"""Lab: three real MariaDB servers on loopback with GTID replication (db1 primary, db2 and
db3 replicas) behind a real HAProxy (write frontend on 127.0.0.1:23070, runtime API on a unix
socket), started and stopped by PID; plus the faults drills and tests inject."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from drengine.clock import wait_until
from drengine.lab import haproxy
from drengine.lab.procs import (
    LOCAL_HOST,
    LOCAL_HOSTS,
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

if TYPE_CHECKING:
    from drengine.datastores.mysql_pool import Connection

KIND = "mariadb"
NAMES = ("db1", "db2", "db3")
PORT_BASE = 23061  # below the kernel's ephemeral ports (32768-60999): no client socket can hold them
CLUSTER = "lab-mariadb"
RUNS_AS = "mysql"  # mariadbd drops to this user: it must reach the lab directory
WRITE_PORT, READ_PORT = 23070, 23071  # HAProxy's frontends
APP_USER = "app"  # what applications (and drill canaries) use through the proxy: no READ ONLY ADMIN


def _dir(lab: LabDir) -> Path:
    return lab.path(KIND)


def _cnf(lab: LabDir, name: str, index: int, port: int) -> Path:
    base = _dir(lab) / name
    text = f"""[mariadbd]
user=mysql
datadir={base}/data
socket={base}/mysqld.sock
pid-file={base}/mysqld.pid
tmpdir={base}/tmp
log-error={base}/error.log
port={port}
bind-address=127.0.0.1
skip-name-resolve
server_id={index + 1}
log_bin=mariadb-bin
log_slave_updates=1
gtid_strict_mode=1
binlog_format=ROW
read_only=1
slave_net_timeout=4
innodb_buffer_pool_size=32M
innodb_log_file_size=16M
performance_schema=OFF
max_connections=60
"""
    path = base / "my.cnf"
    path.write_text(text)
    return path


def _password(lab: LabDir, name: str) -> str:
    path = _dir(lab) / f"{name}.password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(18))
        path.chmod(0o600)
    return path.read_text().strip()


def _socket(lab: LabDir, name: str) -> str:
    return str(_dir(lab) / name / "mysqld.sock")


def _admin(lab: LabDir, name: str, timeout: float = 5.0) -> Connection:
    import pymysql

    return pymysql.connect(unix_socket=_socket(lab, name), user="root", password=_password(lab, "root"),
                           connect_timeout=timeout, read_timeout=30, autocommit=True)


def sql(lab: LabDir, name: str, *statements: str) -> list[tuple[object, ...]]:
    """Run statements as root over the server's socket; return the last result set."""
    conn = _admin(lab, name)
    try:
        rows: list[tuple[object, ...]] = []
        with conn.cursor() as cur:
            for s in statements:
                cur.execute(s)
                rows = list(cur.fetchall() or [])
        return rows
    finally:
        conn.close()


def _argv(lab: LabDir, name: str) -> list[str]:
    return ["/usr/sbin/mariadbd", f"--defaults-file={_dir(lab) / name / 'my.cnf'}"]


def start_server(lab: LabDir, name: str) -> LabProcess:
    proc = lab.spawn(KIND, name, _argv(lab, name), _dir(lab) / name / "stdout.log")
    if not wait_until(lambda: _answers(lab, name) or not is_ours(proc), 30):
        raise LabError(f"mariadb {name} did not answer within 30 s; see {_dir(lab) / name / 'error.log'}")
    if not is_ours(proc):
        raise LabError(f"mariadb {name} exited at start; see {_dir(lab) / name / 'error.log'}")
    return proc


def _answers(lab: LabDir, name: str) -> bool:
    try:
        _admin(lab, name, timeout=1).close()
        return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _install(lab: LabDir, name: str, index: int) -> None:
    base = _dir(lab) / name
    if base.exists():
        shutil.rmtree(base)
    (base / "data").mkdir(parents=True)
    (base / "tmp").mkdir()
    cnf = _cnf(lab, name, index, PORT_BASE + index)
    mysql = pwd.getpwnam("mysql")
    for p in (base, base / "data", base / "tmp"):
        os.chown(p, mysql.pw_uid, mysql.pw_gid)
    done = subprocess.run(
        ["mariadb-install-db", f"--defaults-file={cnf}", "--auth-root-authentication-method=normal",
         "--skip-test-db", "--user=mysql"],
        check=False, capture_output=True, text=True, timeout=120,
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise LabError(f"mariadb-install-db failed for {name} in {base} (exit {done.returncode}): {' | '.join(tail)}")


def _bootstrap_users(lab: LabDir, name: str) -> None:
    import pymysql

    root_pw, repl_pw = _password(lab, "root"), _password(lab, "repl")
    conn = pymysql.connect(unix_socket=_socket(lab, name), user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            # Not logged to the binlog: each server gets the same users without GTIDs to reconcile.
            cur.execute("SET sql_log_bin=0")
            cur.execute("ALTER USER root@localhost IDENTIFIED BY %s", (root_pw,))
            cur.execute("CREATE USER IF NOT EXISTS root@'127.0.0.1'")
            cur.execute("ALTER USER root@'127.0.0.1' IDENTIFIED BY %s", (root_pw,))
            cur.execute("GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION")
            cur.execute("CREATE USER repl@'127.0.0.1' IDENTIFIED BY %s", (repl_pw,))
            cur.execute("GRANT REPLICATION SLAVE ON *.* TO repl@'127.0.0.1'")
            # An application account: read_only=1 stops its writes (it lacks READ ONLY ADMIN, which
            # ALL PRIVILEGES includes), so a fenced old primary refuses what the application sends.
            cur.execute(f"CREATE USER {APP_USER}@'127.0.0.1' IDENTIFIED BY %s", (_password(lab, APP_USER),))
            cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON drengine.* TO {APP_USER}@'127.0.0.1'")
            cur.execute(f"CREATE USER {haproxy.CHECK_USER}@'127.0.0.1'")
            cur.execute("RESET MASTER")
    finally:
        conn.close()


def replicate(lab: LabDir, replica: str, primary: str) -> None:
    port = PORT_BASE + NAMES.index(primary)
    sql(lab, replica, "STOP SLAVE",
        f"CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={port}, MASTER_USER='repl', "
        f"MASTER_PASSWORD='{_password(lab, 'repl')}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
        "START SLAVE")


def lab_proxy(lab: LabDir) -> haproxy.LabProxy:
    return haproxy.LabProxy(kind=KIND, directory=_dir(lab) / "haproxy",
                            members=tuple((n, PORT_BASE + i) for i, n in enumerate(NAMES)), primary=NAMES[0],
                            write_port=WRITE_PORT, read_port=READ_PORT)


def inventory_fragment(lab: LabDir) -> dict[str, object]:
    app: dict[str, object] = {"user": APP_USER, "password": {"file": str(_dir(lab) / f"{APP_USER}.password")}}
    return {
        "kind": "mariadb",
        "drill_target": True,
        "credentials": {"user": "root", "password": {"file": str(_dir(lab) / "root.password")}},
        "replication": {"user": "repl", "password": {"file": str(_dir(lab) / "repl.password")}},
        "timeouts": {"connect": 1.0, "read": 1.5, "catch_up": 20.0},
        "service": {
            action: f"{drengine_command('lab', 'node', action, KIND)} {{name}} --lab-dir {template_literal(str(lab.root))}"
            for action in ("start", "stop")
        },
        "members": [
            {"name": n, "address": "127.0.0.1", "port": PORT_BASE + i, "host": LOCAL_HOST,
             "data_dir": str(_dir(lab) / n / "data"), "pid_file": str(_dir(lab) / n / "mysqld.pid")}
            for i, n in enumerate(NAMES)
        ],
        "proxies": [lab_proxy(lab).inventory(app)],
    }



def lab_ports() -> list[tuple[str, str, int]]:
    """(what, address, port) for every port the lab listens on: the servers and the proxy."""
    return [*((f"mariadb {n}", "127.0.0.1", PORT_BASE + i) for i, n in enumerate(NAMES)),
            ("HAProxy write frontend", "127.0.0.1", WRITE_PORT), ("HAProxy read frontend", "127.0.0.1", READ_PORT)]


def up(lab: LabDir, inventory_out: str | None = None) -> dict[str, object]:
    """Start db1 (primary), db2 and db3 (replicas) and wait for replication to run."""
    down(lab)
    ensure_ports_free(lab, KIND, lab_ports())
    try:
        return _up(lab, inventory_out)
    except BaseException:
        down(lab)
        raise


def _up(lab: LabDir, inventory_out: str | None) -> dict[str, object]:
    for i, name in enumerate(NAMES):
        _install(lab, name, i)
    for name in NAMES:
        lab.spawn(KIND, name, _argv(lab, name), _dir(lab) / name / "stdout.log")
    for name in NAMES:
        proc = lab.find(KIND, name)
        assert proc is not None
        if not wait_until(lambda n=name, p=proc: _socket_ready(lab, n) or not is_ours(p), 30):  # type: ignore[misc]
            raise LabError(f"mariadb {name} did not start; see {_dir(lab) / name / 'error.log'}")
        _bootstrap_users(lab, name)
    # Every server starts read-only (a restarted old primary must not take writes before it
    # is rejoined); the primary is made writable once, here.
    sql(lab, NAMES[0], "SET GLOBAL read_only=0")
    for name in NAMES[1:]:
        replicate(lab, name, NAMES[0])
    wait_replicated(lab)
    proxy = lab_proxy(lab)
    haproxy.start(lab, proxy)
    haproxy.wait_up(proxy, NAMES[0])
    fragment = inventory_fragment(lab)
    if inventory_out:
        merge_inventory(inventory_out, LOCAL_HOSTS, {CLUSTER: fragment})
    return fragment


def _socket_ready(lab: LabDir, name: str) -> bool:
    import pymysql

    try:
        pymysql.connect(unix_socket=_socket(lab, name), user="root", password="", connect_timeout=1).close()
        return True
    except pymysql.err.OperationalError as exc:
        return bool(exc.args[0] == 1045)  # access denied: up, and the password was already set
    except Exception:  # noqa: BLE001
        return False


def wait_replicated(lab: LabDir, primary: str = "db1", timeout: float = 20, replicas: tuple[str, ...] = NAMES) -> None:
    pos = sql(lab, primary, "SELECT @@gtid_binlog_pos")[0][0]
    for name in replicas:
        if name == primary or not is_ours(lab.find(KIND, name) or _none()):
            continue
        rows = sql(lab, name, f"SELECT MASTER_GTID_WAIT('{pos}', {timeout})")
        if rows[0][0] != 0:
            raise LabError(f"{name} did not reach {pos} within {timeout} s")


def _none() -> LabProcess:
    return LabProcess(kind=KIND, name="none", pid=0, argv=["none"], log="")


def down(lab: LabDir) -> None:
    lab.stop_kind(KIND)


def process(lab: LabDir, name: str) -> LabProcess:
    proc = lab.find(KIND, name)
    if proc is None:
        raise LabError(f"the lab has no mariadb server {name}")
    return proc


def kill(lab: LabDir, name: str) -> None:
    signal_process(process(lab, name), signal.SIGKILL)
    lab.forget(process(lab, name))


def hang(lab: LabDir, name: str) -> None:
    signal_process(process(lab, name), signal.SIGSTOP)


def resume(lab: LabDir, name: str) -> None:
    signal_process(process(lab, name), signal.SIGCONT)


def is_running(lab: LabDir, name: str) -> bool:
    proc = lab.find(KIND, name)
    return proc is not None and is_ours(proc)


# What the lab inventory's service templates run (`drengine lab node start|stop mariadb NAME`),
# so drengine starts and stops lab servers like real ones.
NODE_OPTIONS: frozenset[str] = frozenset()


def _known(name: str) -> None:
    if name not in NAMES:
        raise LabError(f"the MariaDB lab has no server {name!r}; its servers are {', '.join(NAMES)}")


def node_start(lab: LabDir, name: str, how: NodeStart) -> str:
    _known(name)
    if is_running(lab, name):
        return f"{name} is already running"
    proc = start_server(lab, name)
    return f"{name} started (pid {proc.pid})"


def node_stop(lab: LabDir, name: str) -> str:
    _known(name)
    found = lab.find(KIND, name)
    if found is not None:
        lab.stop(found)
    return f"{name} stopped"
