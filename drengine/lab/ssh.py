"""SSH lab: several sshd daemons on loopback addresses (127.0.0.2, .3, ...) acting as
separate hosts, with their own host keys, a known_hosts file, a client key pair and an
inventory `hosts:` fragment, so the SSH transport is exercised against a real sshd.

Each sshd runs in the foreground (`-D -e`) under LabDir.spawn, so the recorded PID is the
daemon itself and `down` stops exactly it.
"""

from __future__ import annotations

import fcntl
import ipaddress
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from drengine.clock import wait_until
from drengine.lab.procs import (
    LabDir,
    LabError,
    LabProcess,
    cmdline_of,
    ensure_ports_free,
    listening,
    merge_inventory,
    process_state,
)

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
KIND = "ssh"
START_TIMEOUT = 10.0


def is_running(proc: LabProcess) -> bool:
    """True while the recorded PID is still the sshd started with this lab's config.

    procs.is_ours() cannot tell: sshd rewrites its process title to
    `sshd: /usr/sbin/sshd -D -e -f CONFIG [listener] 0 of 200-200 startups`, so its
    argv[0] no longer matches. The config path (unique to this lab host) still shows.
    """
    cmd = cmdline_of(proc.pid)
    if not cmd or process_state(proc.pid) in (None, "Z", "X"):
        return False
    title = " ".join(cmd)
    return "sshd" in title and proc.argv[-1] in title


@contextmanager
def lab_lock(lab: LabDir) -> Iterator[None]:
    """Serialise read-modify-write of lab.json between processes (the lab CLI, tests, entry points)."""
    lab.root.mkdir(parents=True, exist_ok=True)
    with open(lab.root / "lab.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def host_name(index: int) -> str:
    """Inventory name of the index-th lab host (0-based): host1, host2, ..."""
    return f"host{index + 1}"


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _addresses(first_address: str, n_hosts: int) -> list[str]:
    first = ipaddress.ip_address(first_address)
    addresses = [first + i for i in range(n_hosts)]
    loopback = ipaddress.ip_network("127.0.0.0/8")
    outside = [str(a) for a in addresses if a not in loopback]
    if outside:
        raise LabError(f"lab SSH hosts must live on 127.0.0.0/8 (loopback only); {outside} is outside it")
    return [str(a) for a in addresses]


def _sshd_config(address: str, port: int, host_dir: Path, authorized_keys: Path) -> str:
    return "\n".join(
        [
            f"ListenAddress {address}:{port}",
            f"HostKey {host_dir / 'ssh_host_ed25519_key'}",
            f"PidFile {host_dir / 'sshd.pid'}",
            "UsePAM no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            # The lab's key file for root; the operator users' own (see lab/ssh_site.py), which
            # sshd reads as that user (the lab's folder under /tmp may be closed to them).
            f"AuthorizedKeysFile {authorized_keys} .ssh/authorized_keys",
            # The lab lives under /tmp (mode 1777), which StrictModes rejects.
            "StrictModes no",
            "UseDNS no",
            # Fan-out tests open many sessions at once; the default MaxStartups 10:30:100
            # starts dropping concurrent unauthenticated connections at random.
            "MaxStartups 200",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
            "LogLevel INFO",
            "",
        ]
    )


def up(
    lab: LabDir,
    n_hosts: int = 3,
    first_address: str = "127.0.0.2",
    port: int = 2222,
    inventory_out: str | Path | None = None,
) -> dict[str, Any]:
    """Start `n_hosts` sshd daemons on consecutive loopback addresses and describe them.

    Returns {"hosts": inventory hosts fragment, "known_hosts": path, "key_file": path,
    "seconds": time taken}. Hosts already running from an earlier `up` are kept.
    """
    started = time.monotonic()
    addresses = _addresses(first_address, n_hosts)
    base = lab.path("ssh")
    # sshd refuses to start without its privilege-separation directory.
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)

    key_file = base / "client_key"
    _keygen(key_file, "drengine-lab-client")
    authorized_keys = base / "authorized_keys"
    authorized_keys.write_text((base / "client_key.pub").read_text())

    known_lines: list[str] = []
    hosts: dict[str, Any] = {}
    for i, address in enumerate(addresses):
        name = host_name(i)
        host_dir = lab.path("ssh", name)
        _keygen(host_dir / "ssh_host_ed25519_key", f"drengine-lab-{name}")
        config = host_dir / "sshd_config"
        config.write_text(_sshd_config(address, port, host_dir, authorized_keys))
        pub = (host_dir / "ssh_host_ed25519_key.pub").read_text().split()
        host_id = address if port == 22 else f"[{address}]:{port}"
        known_lines.append(f"{host_id} {pub[0]} {pub[1]}")
        hosts[name] = {
            "address": address,
            "transport": "ssh",
            "ssh": {
                "user": "root",
                "port": port,
                "key_file": str(key_file),
                "known_hosts": str(base / "known_hosts"),
                # The lab is reached as written here, whatever the machine's ~/.ssh/config says.
                "ssh_config": None,
                "connect_timeout": 3.0,
                "command_timeout": 120.0,
            },
        }
        _start_sshd(lab, name, address, port, config, host_dir)
    (base / "known_hosts").write_text("\n".join(known_lines) + "\n")

    for i, address in enumerate(addresses):
        name = host_name(i)
        proc = lab.find(KIND, name)

        def listening_or_dead(address: str = address, proc: LabProcess | None = proc) -> bool:
            return listening(address, port) or proc is None or not is_running(proc)

        if not wait_until(listening_or_dead, START_TIMEOUT):
            raise LabError(f"sshd for {name} did not listen on {address}:{port} within {START_TIMEOUT:g} s")
        if proc is None or not is_running(proc):
            log = lab.path("ssh", name) / "sshd.log"
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise LabError(f"sshd for {name} on {address}:{port} exited at start; its log ends with:\n{tail}")

    if inventory_out is not None:
        merge_inventory(inventory_out, hosts, {})
    return {
        "hosts": hosts,
        "known_hosts": str(base / "known_hosts"),
        "key_file": str(key_file),
        "seconds": round(time.monotonic() - started, 3),
    }


def _start_sshd(lab: LabDir, name: str, address: str, port: int, config: Path, host_dir: Path) -> None:
    existing = lab.find(KIND, name)
    if existing is not None and is_running(existing):
        return
    ensure_ports_free(lab, KIND, [(f"sshd {name}", address, port)])
    check = subprocess.run([SSHD, "-t", "-f", str(config)], check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check.returncode != 0:
        raise LabError(f"sshd rejects the lab configuration {config}: {check.stderr.strip()}")
    with lab_lock(lab):
        # -D keeps sshd in the foreground so the recorded PID is the daemon; -e logs to the file.
        lab.spawn(KIND, name, [SSHD, "-D", "-e", "-f", str(config)], log=host_dir / "sshd.log")


def down(lab: LabDir, timeout: float = 10.0) -> list[str]:
    """Stop every sshd this lab started (by recorded PID, after checking it is still ours)."""
    with lab_lock(lab):
        procs = [p for p in lab.processes() if p.kind == KIND]
        for proc in procs:
            lab.stop(proc, timeout)
        return [p.name for p in procs]


