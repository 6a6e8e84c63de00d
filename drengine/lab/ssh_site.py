"""SSH lab, as a real site is reached: operators log in as themselves and use sudo, and some
hosts sit behind a bastion.

- Two throw-away users: `drengine-ops` (sudo without a password) and `drengine-opspw` (sudo
  asks for a password, which the lab writes to a file and the inventory reads from
  $DRENGINE_LAB_SUDO_PASSWORD). Both log in with the lab's client key; `down` removes them and
  their sudoers file.
- `ops1`: the first SSH lab host, reached as `drengine-opspw` with `become` and that password.
- `bastion` (127.0.0.6) and the inner hosts `inner`, `inner2`, `inner3` (127.0.0.7-9) live in a
  private network namespace, like a production network behind a jump host: from this machine
  only the bastion answers (a socat on 127.0.0.6:2222 hands each connection to `sshd -i` inside
  the namespace), so the inner hosts are reached only through it. Inside, connections to them
  leave from the bastion's address (a route with `src`), and their sshd admits `drengine-ops`
  only from there (`AllowUsers drengine-ops@127.0.0.6`), as a site's sshd would. They share this
  machine's processes and files (not its network): a lab cluster's members can be given these
  hosts, and drengine signals and reads pid files there through the bastion with sudo.

Everything started is recorded with its PID and stopped by it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from functools import partial
from pathlib import Path
from typing import Any

from drengine.clock import wait_until
from drengine.lab import ssh as ssh_lab
from drengine.lab.procs import LabDir, LabError, LabProcess, listening

KIND = "ssh-site"
OPS_USER = "drengine-ops"
OPS_PASSWORD_USER = "drengine-opspw"
SUDO_PASSWORD_ENV = "DRENGINE_LAB_SUDO_PASSWORD"
SUDOERS = Path("/etc/sudoers.d/drengine-lab")
BASTION_ADDRESS = "127.0.0.6"
INNER_HOSTS = {"inner": "127.0.0.7", "inner2": "127.0.0.8", "inner3": "127.0.0.9"}
INNER_ADDRESS = INNER_HOSTS["inner"]
PORT = 2222
START_TIMEOUT = 10.0


def _run(argv: list[str], what: str) -> None:
    done = subprocess.run(argv, check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise LabError(f"{what}: `{' '.join(argv)}` exited {done.returncode}: {done.stderr.strip()[-400:]}")


def _user_exists(user: str) -> bool:
    return subprocess.run(["id", "-u", user], check=False, capture_output=True).returncode == 0


def add_operators(lab: LabDir, public_key: str) -> str:
    """Create the two operator users (when missing) and their sudoers rules; return the
    sudo password of OPS_PASSWORD_USER (also in the lab's `ssh/sudo_password`, mode 600)."""
    password_file = lab.path("ssh") / "sudo_password"
    if not password_file.exists():
        password_file.touch(mode=0o600)
        password_file.write_text(secrets.token_urlsafe(18))
    password = password_file.read_text()
    for user in (OPS_USER, OPS_PASSWORD_USER):
        if not _user_exists(user):
            # Password `*`: no password login, but not locked (sshd without PAM refuses a locked account).
            _run(["useradd", "--create-home", "--shell", "/bin/sh", "--password", "*", user], f"creating lab user {user}")
        home = Path(f"/home/{user}")
        dot_ssh = home / ".ssh"
        dot_ssh.mkdir(mode=0o700, exist_ok=True)
        (dot_ssh / "authorized_keys").write_text(public_key)
        _run(["chown", "-R", f"{user}:{user}", str(dot_ssh)], f"giving {user} its .ssh")
    subprocess.run(["chpasswd"], input=f"{OPS_PASSWORD_USER}:{password}\n", text=True, check=True,
                   capture_output=True)
    rules = lab.path("ssh") / "sudoers"
    rules.write_text(f"{OPS_USER} ALL=(root) NOPASSWD: ALL\n{OPS_PASSWORD_USER} ALL=(root) ALL\n")
    _run(["visudo", "-c", "-q", "-f", str(rules)], "checking the lab's sudoers rules")
    rules.chmod(0o440)
    SUDOERS.write_bytes(rules.read_bytes())
    SUDOERS.chmod(0o440)
    return password


def remove_operators() -> list[str]:
    """Remove the sudoers file and the operator users; say what was removed."""
    removed = [f"removed {SUDOERS}"] if SUDOERS.exists() else []
    SUDOERS.unlink(missing_ok=True)
    for user in (OPS_USER, OPS_PASSWORD_USER):
        if _user_exists(user):
            # Their sessions (the lab's sshd children) end with the lab; -f: a leftover one must not block it.
            subprocess.run(["userdel", "--force", "--remove", user], check=False, capture_output=True)
            removed.append(f"removed lab user {user}")
    return removed


def up_hint(lab: LabDir) -> str:
    """What `drengine lab up ssh-site` tells the operator to do next."""
    return (f"hosts ops1 ({OPS_PASSWORD_USER}, sudo with a password), bastion, and {', '.join(INNER_HOSTS)} "
            f"behind it ({OPS_USER}, sudo -n); for ops1's sudo password:\n"
            f"  export {SUDO_PASSWORD_ENV}=\"$(cat {lab.path('ssh') / 'sudo_password'})\"")


def _record(lab: LabDir, name: str, pid: int, argv: list[str], log: Path) -> LabProcess:
    proc = LabProcess(kind=KIND, name=name, pid=pid, argv=argv, log=str(log))
    lab.record(proc)
    return proc


def _in_namespace(holder: int) -> list[str]:
    return ["nsenter", f"--net=/proc/{holder}/ns/net", "--"]


def _start_namespace(lab: LabDir) -> int:
    """A process holding a private network namespace; the lab's inner hosts live in it."""
    log = lab.path("ssh", "site") / "netns.log"
    with open(log, "ab") as out:
        popen = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    # Recorded as what it becomes (unshare execs sleep), so that `down` recognises it by PID.
    _record(lab, "netns", popen.pid, ["sleep", "infinity"], log)
    if not wait_until(lambda: os.path.exists(f"/proc/{popen.pid}/ns/net") and
                      os.readlink(f"/proc/{popen.pid}/ns/net") != os.readlink("/proc/self/ns/net"), 5.0, interval=0.01):
        raise LabError("the lab's private network namespace (unshare --net) did not come up")
    ns = _in_namespace(popen.pid)
    _run([*ns, "ip", "link", "set", "lo", "up"], "bringing up loopback in the lab's namespace")
    # Connections to the inner hosts leave from the bastion's address: their sshd can then tell them apart.
    for name, address in INNER_HOSTS.items():
        _run([*ns, "ip", "route", "add", "local", f"{address}/32", "dev", "lo", "src", BASTION_ADDRESS,
              "table", "local"], f"routing {name} through the bastion's address")
    return popen.pid


def _listens_inside(holder: int, address: str) -> bool:
    probe = [*_in_namespace(holder), "bash", "-c", f"exec 3<>/dev/tcp/{address}/{PORT}"]
    return subprocess.run(probe, check=False, capture_output=True).returncode == 0


def _host_config(lab: LabDir, name: str, address: str, allow: str | None) -> tuple[Path, Path]:
    host_dir = lab.path("ssh", name)
    ssh_lab._keygen(host_dir / "ssh_host_ed25519_key", f"drengine-lab-{name}")
    config = host_dir / "sshd_config"
    text = ssh_lab._sshd_config(address, PORT, host_dir, lab.path("ssh") / "authorized_keys")
    if allow:
        text += f"AllowUsers {allow}\n"
    config.write_text(text)
    return config, host_dir


def up(lab: LabDir, inventory_out: str | Path | None = None) -> dict[str, Any]:
    """Operators with sudo on the first SSH lab host, and a bastion in front of the inner hosts.

    Returns {"hosts": inventory hosts fragment, "sudo_password": the password for
    $DRENGINE_LAB_SUDO_PASSWORD}. Starts the plain SSH lab first when it is not running."""
    from drengine.lab.procs import merge_inventory

    plain = ssh_lab.up(lab, n_hosts=1)
    base = lab.path("ssh")
    password = add_operators(lab, (base / "client_key.pub").read_text())
    if lab.find(KIND, "netns") is None:
        holder = _start_namespace(lab)
        for name, address in INNER_HOSTS.items():
            inner_config, inner_dir = _host_config(lab, name, address, f"{OPS_USER}@{BASTION_ADDRESS}")
            argv = [ssh_lab.SSHD, "-D", "-e", "-f", str(inner_config)]
            with open(inner_dir / "sshd.log", "ab") as out:
                popen = subprocess.Popen([*_in_namespace(holder), *argv], stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            _record(lab, name, popen.pid, argv, inner_dir / "sshd.log")  # nsenter execs sshd: same PID
        bastion_config, bastion_dir = _host_config(lab, "bastion", BASTION_ADDRESS, None)
        if listening(BASTION_ADDRESS, PORT):
            raise LabError(f"{BASTION_ADDRESS}:{PORT} is taken by a process this lab did not start")
        # One `sshd -i` per connection, inside the namespace: what the bastion forwards to stays there.
        inetd = " ".join([*_in_namespace(holder), ssh_lab.SSHD, "-i", "-e", "-f", str(bastion_config)])
        lab.spawn(KIND, "bastion", ["socat", f"TCP-LISTEN:{PORT},bind={BASTION_ADDRESS},reuseaddr,fork",
                                    f"EXEC:{inetd}"], log=bastion_dir / "sshd.log")
        if not wait_until(lambda: listening(BASTION_ADDRESS, PORT), START_TIMEOUT):
            raise LabError(f"the bastion did not listen on {BASTION_ADDRESS}:{PORT} within {START_TIMEOUT:g} s")
        for name, address in INNER_HOSTS.items():
            if not wait_until(partial(_listens_inside, holder, address), START_TIMEOUT, interval=0.1):
                raise LabError(f"{name}'s sshd did not listen on {address}:{PORT} inside the lab's namespace")
    known = base / "known_hosts"
    lines = known.read_text().splitlines()
    for name, address in (("bastion", BASTION_ADDRESS), *INNER_HOSTS.items()):
        pub = (lab.path("ssh", name) / "ssh_host_ed25519_key.pub").read_text().split()
        entry = f"[{address}]:{PORT} {pub[0]} {pub[1]}"
        if entry not in lines:
            lines.append(entry)
    known.write_text("\n".join(lines) + "\n")
    common = {"port": PORT, "key_file": plain["key_file"], "known_hosts": str(known), "ssh_config": None,
              "connect_timeout": 3.0, "command_timeout": 60.0}
    hosts: dict[str, Any] = {
        "ops1": {"address": plain["hosts"]["host1"]["address"], "ssh": {**common, "user": OPS_PASSWORD_USER},
                 "become": True, "become_password": {"env": SUDO_PASSWORD_ENV}},
        "bastion": {"address": BASTION_ADDRESS, "ssh": {**common, "user": OPS_USER}},
        **{name: {"address": address, "ssh": {**common, "user": OPS_USER, "proxy_jump": "bastion"}, "become": True}
           for name, address in INNER_HOSTS.items()},
    }
    if inventory_out is not None:
        merge_inventory(inventory_out, hosts, {})
    return {"hosts": hosts, "sudo_password": password}


def down(lab: LabDir, timeout: float = 10.0) -> list[str]:
    """Stop the bastion, the inner hosts and the namespace (by recorded PID), then remove the users."""
    procs = [p for p in lab.processes() if p.kind == KIND]
    for proc in reversed(procs):
        lab.stop(proc, timeout)
    remove_operators()
    return [p.name for p in procs]
