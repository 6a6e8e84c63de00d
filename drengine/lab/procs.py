"""Lab processes: start real datastore daemons on loopback, remember their PIDs in the lab
directory's `lab.json`, and stop exactly those PIDs again.

A PID is only signalled when /proc still shows the command line recorded at start, so a
recycled PID is never killed by mistake.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drengine.clock import wait_until
from drengine.errors import DrengineError, InputError
from drengine.files import atomic_write


def listening(address: str, port: int) -> bool:
    """Does something accept TCP connections there (a lab process up, or a port taken)?"""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


DEFAULT_LAB_DIR = "/tmp/drengine-lab"
# The inventory host of lab members that run on this machine: drengine reaches a member's host
# only through a host the inventory names (see transport.member_transport), labs included.
LOCAL_HOST = "lab-local"
LOCAL_HOSTS: dict[str, Any] = {LOCAL_HOST: {"address": "127.0.0.1", "transport": "local"}}


class LabError(DrengineError):
    """A lab service could not be started or stopped."""


@dataclass(frozen=True)
class NodeStart:
    """How `drengine lab node start` starts one node; only the Galera lab takes these options."""

    bootstrap: bool = False  # a new Primary component (--wsrep-new-cluster)
    start_position: str | None = None  # uuid:seqno from --wsrep-recover (rejoin by IST)
    recover: bool = True  # run --wsrep-recover first when grastate.dat has seqno -1
    timeout: float | None = None  # seconds to wait for the node (None: the lab's default)

    def given(self) -> list[str]:
        """The options that differ from a plain start, as command-line flags."""
        flags = {"--bootstrap": self.bootstrap, "--start-position": self.start_position is not None,
                 "--no-recover": not self.recover, "--timeout": self.timeout is not None}
        return [flag for flag, on in flags.items() if on]


def template_literal(text: str) -> str:
    """A constant inside a service template: shell-quoted, braces doubled (templates are formatted)."""
    return shlex.quote(text).replace("{", "{{").replace("}", "}}")


def drengine_command(*words: str) -> str:
    """The start of a lab service template that runs this drengine (`python -m drengine WORDS`)
    through any host transport on this machine. SSH logins do not inherit our environment, so the
    folder holding the drengine package is put on PYTHONPATH (harmless where it is installed)."""
    package_parent = Path(__file__).resolve().parents[2]
    return " ".join([f"PYTHONPATH={template_literal(str(package_parent))}", template_literal(sys.executable),
                     "-m", "drengine", *map(template_literal, words)])


@dataclass
class LabProcess:
    kind: str  # lab kind that owns it: mariadb, galera, ceph, ssh, ...
    name: str  # e.g. db1, mon.a, osd.0, sshd-127.0.0.2
    pid: int
    argv: list[str]
    log: str
    started_at: float = field(default_factory=time.time)


def cmdline_of(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def process_state(pid: int) -> str | None:
    """The one-letter state from /proc (R, S, T for stopped, Z for zombie), or None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def is_ours(proc: LabProcess) -> bool:
    """True while the PID still runs the program we started (not a recycled PID, not a zombie).

    The executable is compared, not the command line: sshd rewrites its process title."""
    if process_state(proc.pid) in (None, "Z", "X"):
        return False
    exe = _exe(proc.pid)
    wanted = shutil.which(proc.argv[0]) or proc.argv[0]
    if exe is not None:
        return Path(exe).name == Path(os.path.realpath(wanted)).name or Path(exe).name == Path(wanted).name
    cmd = cmdline_of(proc.pid)
    return cmd is not None and len(cmd) > 0 and Path(cmd[0]).name == Path(proc.argv[0]).name


class LabDir:
    """One lab: a directory holding every service's files and the list of processes started."""

    def __init__(self, root: str | Path = DEFAULT_LAB_DIR) -> None:
        self.root = Path(root).resolve()
        self.state_file = self.root / "lab.json"

    def path(self, *parts: str) -> Path:
        p = self.root.joinpath(*parts)
        p.mkdir(parents=True, exist_ok=True)
        return p

    def processes(self) -> list[LabProcess]:
        try:
            raw = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return []
        return [LabProcess(**p) for p in raw.get("processes", [])]

    def _save(self, procs: list[LabProcess]) -> None:
        atomic_write(self.state_file, json.dumps({"processes": [asdict(p) for p in procs]}, indent=1))

    def record(self, proc: LabProcess) -> None:
        procs = [p for p in self.processes() if not (p.kind == proc.kind and p.name == proc.name)]
        self._save([*procs, proc])

    def forget(self, proc: LabProcess) -> None:
        self._save([p for p in self.processes() if not (p.kind == proc.kind and p.name == proc.name)])

    def find(self, kind: str, name: str) -> LabProcess | None:
        for p in self.processes():
            if p.kind == kind and p.name == name:
                return p
        return None

    def spawn(
        self,
        kind: str,
        name: str,
        argv: Sequence[str],
        log: Path,
        env: dict[str, str] | None = None,
        user: str | None = None,
        cwd: Path | None = None,
    ) -> LabProcess:
        """Start a daemon in its own session (it outlives `drengine lab up`) and record its PID."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                user=user,
                start_new_session=True,
            )
        lab_proc = LabProcess(kind=kind, name=name, pid=proc.pid, argv=list(argv), log=str(log))
        self.record(lab_proc)
        # Popen returns before execve finishes; until then /proc shows the Python parent.
        wait_until(lambda: is_ours(lab_proc) or proc.poll() is not None, 5.0, interval=0.005)
        return lab_proc

    def stop(self, proc: LabProcess, timeout: float = 10.0) -> None:
        """SIGCONT (a hung daemon ignores SIGTERM while stopped), SIGTERM, wait, then SIGKILL."""
        if is_ours(proc):
            for sig in (signal.SIGCONT, signal.SIGTERM):
                _signal(proc.pid, sig)
            if not wait_until(lambda: not is_ours(proc), timeout):
                _signal(proc.pid, signal.SIGKILL)
                wait_until(lambda: not is_ours(proc), 5.0)
        _reap(proc.pid)
        self.forget(proc)

    def stop_kind(self, kind: str | None = None) -> list[LabProcess]:
        """Stop every recorded process of one kind (all when None), newest first."""
        stopped = []
        for proc in reversed(self.processes()):
            if kind is None or proc.kind == kind:
                self.stop(proc)
                stopped.append(proc)
        return stopped


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int) -> None:
    """Collect the exit status when we are the parent, so no zombie stays behind."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def signal_process(proc: LabProcess, sig: signal.Signals) -> None:
    """Send a fault signal (SIGKILL, SIGSTOP, SIGCONT) to a lab process we started."""
    if not is_ours(proc):
        raise LabError(f"lab process {proc.kind}/{proc.name} (pid {proc.pid}) is not running")
    _signal(proc.pid, sig)
    if sig == signal.SIGKILL:
        wait_until(lambda: not is_ours(proc), 5.0)
        _reap(proc.pid)


def merge_inventory(path: str | Path, hosts: dict[str, Any], clusters: dict[str, Any]) -> None:
    """Add or replace hosts and clusters in a lab inventory file, keeping the others."""
    target = Path(path)
    current: dict[str, Any] = {}
    if target.exists():
        current = yaml.safe_load(target.read_text()) or {}
    current.setdefault("hosts", {}).update(hosts)
    current.setdefault("clusters", {}).update(clusters)
    if not current["hosts"]:
        del current["hosts"]
    atomic_write(target, "# Written by `drengine lab up`; lab services on loopback.\n" + yaml.safe_dump(current, sort_keys=False))


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a daemon could listen on the port now, checked the way daemons bind it: with
    SO_REUSEADDR, so a port whose old connections sit in TIME_WAIT (a lab just stopped) is free."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class PortBusy(LabError):
    """A port a lab needs is held by another process: exit 1, naming the port, the holder and
    what frees it."""


@dataclass(frozen=True)
class PortHolder:
    """Who listens on a port, read from /proc (pid and command; None where /proc hides them),
    and the lab directory that started it when it is a lab process."""

    address: str
    port: int
    pid: int | None
    command: str | None
    lab_root: Path | None

    def describe(self) -> str:
        where = f"{self.address}:{self.port}"
        if self.pid is None:
            return f"{where} is in use (its process is not visible in /proc: another user's or another namespace's)"
        held = f"{where} is held by pid {self.pid} ({self.command or '?'})"
        if self.lab_root is not None:
            return f"{held}, a process of the lab in {self.lab_root}; `drengine lab down --dir {self.lab_root}` frees it"
        return f"{held}, not a drengine lab process; stop it (`kill {self.pid}`) to free the port"


def _listening_inodes(address: str, port: int) -> set[str]:
    """Socket inodes listening on address:port or on every address at that port (/proc/net/tcp,
    and tcp6 where a wildcard socket also takes IPv4)."""
    wanted = {socket.inet_aton(address)[::-1].hex().upper(), "00000000"}  # /proc shows IPv4 little-endian
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) <= 9 or fields[3] != "0A":  # 0A: LISTEN
                continue
            local, hex_port = fields[1].rsplit(":", 1)
            ours = local in wanted if table.endswith("tcp") else local.strip("0") == "" or local[-8:] in wanted
            if int(hex_port, 16) == port and ours:
                inodes.add(fields[9])
    return inodes


def _pid_holding(inodes: set[str]) -> int | None:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    return int(entry.name)
            except OSError:
                continue
    return None


def _lab_of(pid: int, command: list[str]) -> Path | None:
    """The lab directory that recorded this pid: found from the paths on its command line (a
    config file, a data directory: every lab daemon is given one under its lab directory), its
    working directory, and the default lab directories."""
    candidates: list[Path] = []
    for word in command:
        value = word.split("=", 1)[1] if word.startswith("-") and "=" in word else word
        if value.startswith("/"):
            candidates.extend(Path(value).parents)
    with_cwd = [Path(os.readlink(f"/proc/{pid}/cwd"))] if os.path.exists(f"/proc/{pid}/cwd") else []
    candidates.extend(with_cwd)
    candidates.extend(Path(d) for d in (os.environ.get("DRENGINE_LAB_DIR", ""), DEFAULT_LAB_DIR) if d)
    for folder in dict.fromkeys(candidates):
        if folder != Path("/") and (folder / "lab.json").is_file() and any(p.pid == pid for p in LabDir(folder).processes()):
            return folder
    return None


def port_holder(port: int, address: str = "127.0.0.1") -> PortHolder | None:
    """None when a daemon could bind the port now; otherwise who holds it."""
    if port_free(port, address):
        return None
    pid = _pid_holding(_listening_inodes(address, port))
    command = cmdline_of(pid) if pid is not None else None
    lab_root = _lab_of(pid, command) if pid is not None and command else None
    text = " ".join(command) if command else None
    if text is not None and len(text) > 160:
        text = text[:160] + "..."
    return PortHolder(address, port, pid, text, lab_root)


def ensure_ports_free(lab: LabDir, kind: str, ports: Sequence[tuple[str, str, int]]) -> None:
    """Before a lab starts anything: every (what, address, port) it will listen on is free, or
    held by this very lab (its own `up` handles a restart). Otherwise one clear refusal naming
    each busy port, the process holding it (pid and command, from /proc) and what frees it,
    instead of the daemon's own failure further on (a connection error from a client that
    reached the other lab's server)."""
    own = {p.pid for p in lab.processes() if is_ours(p)}
    busy = [(what, holder) for what, address, port in ports
            if (holder := port_holder(port, address)) is not None and holder.pid not in own]
    if busy:
        lines = [f"  {what}: {holder.describe()}" for what, holder in busy]
        raise PortBusy(f"the {kind} lab cannot start in {lab.root}: {len(busy)} port(s) it listens on are in use\n"
                       + "\n".join(lines))


def _lets_through(st: os.stat_result, uid: int, gids: set[int]) -> bool:
    import stat

    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def check_lab_dir(root: Path, runs_as: str | None = None) -> None:
    """Before anything starts: the lab directory can be created here, and the user the daemons
    run as (mysql for MariaDB) can reach it through every parent. Says what to change."""
    import getpass
    import grp
    import pwd
    import stat

    root = root.resolve()
    existing = next(p for p in [root, *root.parents] if p.exists())
    if not existing.is_dir():
        raise InputError(f"the lab directory {root} cannot be made: {existing} is a file, not a directory; choose another --dir")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"the lab directory {root} cannot be made: {existing} is not writable by {getpass.getuser()} "
                         f"(mode {stat.filemode(existing.stat().st_mode)}); choose another --dir (e.g. {DEFAULT_LAB_DIR}) "
                         f"or make {existing} writable")
    if runs_as is None:
        return
    try:
        account = pwd.getpwnam(runs_as)
    except KeyError:
        raise InputError(f"the lab's daemons run as user {runs_as!r}, which does not exist here; install the datastore's "
                         f"package (it creates the user)") from None
    gids = {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if runs_as in g.gr_mem}
    for parent in [existing, *existing.parents]:
        st = parent.stat()
        if not _lets_through(st, account.pw_uid, gids):
            raise InputError(
                f"the lab's daemons run as {runs_as}, who cannot reach {root}: {parent} (mode "
                f"{stat.filemode(st.st_mode)}, owner {pwd.getpwuid(st.st_uid).pw_name}) does not let {runs_as} through. "
                f"Choose a --dir whose parents everyone may enter (e.g. {DEFAULT_LAB_DIR}), or `chmod o+x {parent}`"
            )
