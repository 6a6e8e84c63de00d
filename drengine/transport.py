"""Host transports: how drengine runs a command on a host, locally or over SSH.

A command is either an argv list (each element shell-quoted before it crosses SSH, so a
hostile name or path stays one argument) or a service template rendered by
`render_template`, which quotes every substituted value. Every run is bounded: a dead
host fails within its connect timeout, a hung command within its command timeout, and
`run_on_hosts` fans out over a bounded pool so one hung host cannot stall the others.

Which host runs a member is decided in one place, `member_transport`: the inventory host named
by the member's `host:`; a member without one is refused, never guessed to be this machine.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import shlex
import signal
import socket
import string
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

from drengine.errors import CommandFailed, ConnectError, DrengineError, InputError, ProbeTimeout
from drengine.inventory import Cluster, Host, Inventory, Member, SSHSettings, Transport
from drengine.redact import REDACTOR

if TYPE_CHECKING:  # paramiko is imported lazily: `drengine --help` must stay instant
    import paramiko

# Output beyond this is dropped (and said so): a runaway command must not exhaust memory.
MAX_OUTPUT_BYTES = 8 * 1024 * 1024
# Grace on top of each host's own timeouts before run_on_hosts gives up waiting for it.
FANOUT_GRACE_SECONDS = 5.0
# After a remote command's exit status, how long to wait for the output's end (channel EOF).
EOF_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class ShellCommand:
    """A shell command line whose substituted values are already quoted (see render_template)."""

    text: str
    # True when `text` already carries the host's sudo (render_service adds it, so that plans
    # show the command exactly as sent): the transport must not wrap it a second time.
    elevated: bool = False


# An argv list (no shell involved locally; quoted element by element over SSH) or a
# rendered template. A bare `str` is refused: it would be an unquoted shell line.
Command: TypeAlias = Sequence[str] | ShellCommand


@dataclass(frozen=True)
class CommandResult:
    host: str
    command: str  # as shown to the operator (and as sent over SSH)
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self) -> CommandResult:
        """Return self when the command succeeded; otherwise raise CommandFailed saying why."""
        if self.exit_status != 0:
            tail = (self.stderr.strip() or self.stdout.strip())[-800:]
            raise CommandFailed(
                REDACTOR.text(
                    f"on host {self.host}, `{self.command}` exited with status {self.exit_status}"
                    + (f": {tail}" if tail else " and printed nothing")
                )
            )
        return self


@runtime_checkable
class HostTransport(Protocol):
    name: str

    def run(self, command: Command, timeout: float | None = None) -> CommandResult: ...

    def read_file(self, path: str) -> str: ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- templates


def _quote_state_after(literal: str, state: str) -> str:
    """Track POSIX shell quoting through literal template text: '' (none), "'" or '"'."""
    i = 0
    while i < len(literal):
        ch = literal[i]
        if state == "'":
            if ch == "'":
                state = ""
        elif ch == "\\":
            i += 1  # the next character is escaped, outside single quotes
        elif state == '"':
            if ch == '"':
                state = ""
        elif ch in "'\"":
            state = ch
        i += 1
    return state


def render_template(template: str, **values: str | int) -> ShellCommand:
    """Substitute `{name}`-style placeholders with shell-quoted values.

    Unknown placeholders, format specs (`{port:05}`), attribute or index access
    (`{name.upper}`) and placeholders inside quotes (where the added quoting would be
    wrong) are refused with an InputError, so a template cannot be rendered into
    something other than what its author saw. `{{` and `}}` are literal braces.
    """
    return _rendered(template, tuple(sorted(values.items())))


@lru_cache(maxsize=1024)
def _rendered(template: str, items: tuple[tuple[str, str | int], ...]) -> ShellCommand:
    # A pure function of its arguments, asked for the same members' commands again and again
    # (every plan, gate and fencing step shows them): rendered once each.
    values = dict(items)
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(f"service template {template!r} is malformed ({exc}); write literal braces as {{{{ and }}}}") from None
    known = ", ".join("{" + k + "}" for k in sorted(values)) or "none"
    out: list[str] = []
    state = ""
    for literal, field, spec, conversion in parsed:
        out.append(literal)
        state = _quote_state_after(literal, state)
        if field is None:
            continue
        if field not in values:
            raise InputError(
                f"service template {template!r} uses the placeholder {{{field}}}, which drengine does not know; "
                f"known placeholders: {known}"
            )
        if spec or conversion:
            raise InputError(
                f"service template {template!r}: write the placeholder as plain {{{field}}}; "
                f"format specs and conversions are not supported"
            )
        if state:
            raise InputError(
                f"service template {template!r}: the placeholder {{{field}}} stands inside {state} quotes; "
                f"remove those quotes, drengine quotes every substituted value itself"
            )
        value = str(values[field])
        if "\x00" in value:
            raise InputError(f"the value for {{{field}}} contains a NUL byte, which no command argument can hold")
        out.append(shlex.quote(value))
    if state:
        raise InputError(f"service template {template!r} has an unterminated {state} quote")
    return ShellCommand("".join(out))


ServiceAction = Literal["start", "stop", "bootstrap", "recover", "status"]


def render_service(cluster: Cluster, member: Member, action: ServiceAction, default: str | None = None,
                   example: str = "") -> ShellCommand:
    """The exact shell command a service action sends for this member: the inventory's
    `service: ACTION:` template (else `default`, the datastore's packaged command) rendered with
    {name}, {address}, {port} and {data_dir} (the member's, else the datastore's default data
    directory), each value shell-quoted. `example` shows the operator a template to add."""
    from drengine.datastores import datastore

    template: str | None = getattr(cluster.service, action) or default
    if template is None:
        hint = f" (e.g. `{example}`)" if example else ""
        raise InputError(f"cluster {cluster.name} has no `service: {action}:` command in the inventory; drengine "
                         f"needs it to {action} {member.name}{hint}")
    values: dict[str, str | int] = {"name": member.name, "address": member.address, "port": cluster.port_of(member)}
    data_dir = member.data_dir or datastore(cluster.kind).default_data_dir
    if data_dir is not None:
        values["data_dir"] = data_dir
    elif "{data_dir}" in template:
        raise InputError(f"cluster {cluster.name}: the `service: {action}:` template uses {{data_dir}}, but member "
                         f"{member.name} has no `data_dir:` in the inventory and {cluster.kind} has no default one; "
                         f"add `data_dir:` to the member")
    rendered = render_template(template, **values)
    host = cluster.host_of(member)
    if host is not None and host.become:
        return ShellCommand(elevate(host, rendered.text), elevated=True)
    return rendered


# --------------------------------------------------------------------------- become (sudo)

# The prompt sudo -S prints when it wants the password: unique, so that the SSH transport
# sends become_password only when sudo asks for it (a NOPASSWD rule or a cached ticket means
# it does not ask, and the password must then never reach the command's stdin).
SUDO_PROMPT = "[drengine-sudo-password]"
# A command made only of words (quoted or not) can follow `sudo` as it is; anything a shell
# interprets (;, |, &&, $, redirections, globs, VAR=value) runs as `sudo sh -c '...'` so that
# all of it, not only its first command, runs as root.
_SHELL_SYNTAX = set(";&|<>$`(){}*?~!#\n")


def _plain_words(text: str) -> bool:
    try:
        words = shlex.split(text)
    except ValueError:
        return False
    unquoted = _unquoted_chars(text)
    return bool(words) and not (unquoted & _SHELL_SYNTAX) and "=" not in words[0] and not words[0].startswith("-")


def _unquoted_chars(text: str) -> set[str]:
    chars: set[str] = set()
    state = ""
    for ch in text:
        if state == "'":
            state = "" if ch == "'" else state
        elif state == '"':
            state = "" if ch == '"' else state
        elif ch in "'\"":
            state = ch
        else:
            chars.add(ch)
    return chars


def sudo_prefix(host: Host) -> str:
    """`sudo -n` (never prompts: fails at once when sudoers wants a password), or `sudo -S -p PROMPT`
    when the inventory gives become_password (fed on stdin when, and only when, sudo asks)."""
    return f"sudo -S -p {shlex.quote(SUDO_PROMPT)}" if host.become_password is not None else "sudo -n"


def elevate(host: Host, text: str) -> str:
    """The command line as sent to a host with `become: true`: under sudo, as root."""
    if not host.become:
        return text
    if _plain_words(text):
        return f"{sudo_prefix(host)} {text}"
    return f"{sudo_prefix(host)} sh -c {shlex.quote(text)}"


def as_sent(host: Host | None, command: Command) -> str:
    """The exact line a host runs for `command`: with its sudo when the host has `become: true`."""
    text = command_text(command)
    if host is None or (isinstance(command, ShellCommand) and command.elevated):
        return text
    return elevate(host, text)


def _raise_if_sudo_refused(host: Host | None, host_name: str, status: int, stderr: bytes) -> None:
    if host is not None and host.become and status != 0:
        refused = _sudo_refused(host_name, stderr.decode("utf-8", errors="replace"))
        if refused is not None:
            raise refused


def _sudo_refused(host_name: str, stderr: str) -> CommandFailed | None:
    if "a password is required" in stderr or "a terminal is required" in stderr:
        return CommandFailed(
            f"on host {host_name}, sudo asks for a password (`sudo -n` refused to prompt): give the host "
            f"`become_password: {{env: VARIABLE}}` (or `{{file: PATH}}`) in the inventory, or let this user run "
            f"the commands without one (NOPASSWD in sudoers)"
        )
    if "is not in the sudoers file" in stderr or "is not allowed to execute" in stderr:
        return CommandFailed(f"on host {host_name}, sudo refuses this user: {stderr.strip()[-300:]}; "
                             f"`become: true` needs a sudoers rule for it")
    return None


def command_text(command: Command) -> str:
    """The command as one shell line: what is shown to the operator and sent over SSH."""
    if isinstance(command, ShellCommand):
        return command.text
    return shlex.join(_argv(command))


def _argv(command: Sequence[str]) -> list[str]:
    if isinstance(command, str):
        raise InputError(f"command {command!r} is a bare string; pass an argv list, or render a template with render_template")
    argv = [str(a) for a in command]
    if not argv:
        raise InputError("cannot run an empty command")
    if any("\x00" in a for a in argv):
        raise InputError(f"command {argv!r} contains a NUL byte, which no command argument can hold")
    return argv


def _decode(data: bytes, truncated: bool) -> str:
    text = data.decode("utf-8", errors="replace")
    return text + ("\n[drengine: output truncated]" if truncated else "")


# --------------------------------------------------------------------------- local


class LocalTransport:
    """Run commands on this machine: argv without a shell, templates with /bin/sh -c."""

    def __init__(self, name: str = "localhost", command_timeout: float = 60.0, host: Host | None = None) -> None:
        self.name = name
        self.command_timeout = command_timeout
        self.host = host

    def run(self, command: Command, timeout: float | None = None) -> CommandResult:
        host = self.host
        if host is not None and host.become and host.become_password is not None:
            # Feeding sudo's prompt needs the interactive loop only the SSH transport has.
            raise InputError(f"host {self.name}: `become_password:` is supported over SSH only; on this machine "
                             f"(transport: local) allow the commands without a password (NOPASSWD) or run "
                             f"drengine as root")
        shown = as_sent(host, command)
        if host is not None and host.become:
            argv = ["/bin/sh", "-c", shown]
        else:
            argv = ["/bin/sh", "-c", command.text] if isinstance(command, ShellCommand) else _argv(command)
        limit = self.command_timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            # Its own session, so that a timeout can kill the whole process group: a shell
            # that started children must not leave them running (or holding our pipes).
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(self.name, shown, 127, "", f"{argv[0]}: {exc.strerror}\n", time.monotonic() - started)
        try:
            out, err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            raise ProbeTimeout(
                REDACTOR.text(
                    f"on host {self.name}, `{shown}` did not finish within {limit:g} s; "
                    f"it was killed (its whole process group). Raise the command timeout if it is merely slow."
                )
            ) from None
        _raise_if_sudo_refused(host, self.name, proc.returncode, err)
        return CommandResult(
            self.name,
            shown,
            proc.returncode,
            _decode(out[:MAX_OUTPUT_BYTES], len(out) > MAX_OUTPUT_BYTES),
            _decode(err[:MAX_OUTPUT_BYTES], len(err) > MAX_OUTPUT_BYTES),
            time.monotonic() - started,
        )

    def read_file(self, path: str) -> str:
        if self.host is not None and self.host.become:
            result = self.run(["cat", "--", path])
            if result.exit_status != 0:
                raise CommandFailed(f"on host {self.name}, cannot read {path}: {result.stderr.strip() or 'cat failed'}")
            return result.stdout
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise CommandFailed(f"on host {self.name}, cannot read {path}: {exc.strerror}") from None

    def close(self) -> None:
        pass


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        # A grandchild that left the group (setsid) may still hold the pipes open: don't wait forever.
        proc.communicate(timeout=2.0)
    except subprocess.TimeoutExpired:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait(timeout=2.0)


# --------------------------------------------------------------------------- ssh


def fingerprint(key: paramiko.PKey) -> str:
    """The OpenSSH-style fingerprint (`ssh-ed25519 SHA256:...`), as `ssh-keygen -lf` prints it."""
    digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
    return f"{key.get_name()} SHA256:{digest}"


class _SudoAnswerer:
    """Answers sudo -S's prompt (ours, on stderr) once per command, and strips it from the output.
    Asked again means the password was wrong: trying it twice more would only lock the account."""

    def __init__(self, host: str, password: str | None, source: str) -> None:
        self._host = host
        self._password = password
        self._source = source
        self._asked = 0

    def answer(self, chan: paramiko.Channel, err: bytearray) -> None:
        if self._password is None:
            return
        prompt = SUDO_PROMPT.encode()
        at = err.find(prompt)
        if at < 0:
            return
        del err[at:at + len(prompt)]
        self._asked += 1
        if self._asked > 1:
            # The channel is closed on the way out, which ends the waiting sudo.
            raise CommandFailed(f"on host {self._host}, sudo refused the become_password read from {self._source} "
                                f"(it asked again: a wrong password); the command was not run")
        chan.sendall((self._password + "\n").encode())


class _UnknownHostKey(Exception):
    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__("unknown host key")
        self.key = key


def _make_reject_policy() -> paramiko.MissingHostKeyPolicy:
    import paramiko

    class RejectUnknown(paramiko.MissingHostKeyPolicy):
        """Like paramiko's RejectPolicy, but keeps the offered key so the error can show it."""

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            raise _UnknownHostKey(key)

    return RejectUnknown()


def _make_accept_policy() -> paramiko.MissingHostKeyPolicy:
    import paramiko

    class AcceptForLab(paramiko.MissingHostKeyPolicy):
        """Accept an unknown key for this connection only. paramiko's AutoAddPolicy would also
        write it into the known_hosts file loaded, turning a lab shortcut into lasting trust."""

        def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
            return None

    return AcceptForLab()


@dataclass(frozen=True)
class SSHRoute:
    """Where and as whom an SSH connection goes, after the operator's ssh_config is applied."""

    address: str  # what is connected to (ssh_config's HostName for the inventory address)
    port: int
    user: str
    key_files: tuple[str, ...]  # explicit keys; empty: the ssh-agent and ~/.ssh keys
    only_key_files: bool  # the inventory's own key_file: that key alone
    jumps: tuple[tuple[str, Host], ...]  # bastions, outermost first


def _ssh_config_options(settings: SSHSettings, address: str) -> dict[str, Any]:
    if settings.ssh_config is None:
        return {}
    import paramiko

    path = Path(settings.ssh_config).expanduser()
    if not path.is_file():
        return {}
    try:
        options: dict[str, Any] = dict(paramiko.SSHConfig.from_path(str(path)).lookup(address))
    except (OSError, ValueError, paramiko.SSHException) as exc:
        raise InputError(f"cannot read the SSH client config {path} ({exc}); fix it, or set `ssh_config: null` for the "
                         f"host to ignore it") from None
    return options


def _jumps_from_config(spec: str, settings: SSHSettings, label: str) -> tuple[tuple[str, Host], ...]:
    """ProxyJump `[user@]host[:port],...` from ssh_config, as hosts reached one after the other."""
    hops: list[tuple[str, Host]] = []
    for hop in (h.strip() for h in spec.split(",")):
        if not hop or hop.lower() == "none":
            continue
        user, _, rest = hop.rpartition("@")
        address, _, port = rest.partition(":")
        fields: dict[str, Any] = {"known_hosts": settings.known_hosts, "ssh_config": settings.ssh_config,
                                  "connect_timeout": settings.connect_timeout,
                                  "accept_unknown_host_keys": settings.accept_unknown_host_keys}
        if user:
            fields["user"] = user
        if port:
            fields["port"] = port
        try:
            host = Host(address=address, ssh=SSHSettings(**fields))
        except ValueError as exc:
            raise InputError(f"host {label}: ssh_config's ProxyJump {spec!r} has a hop {hop!r} drengine cannot use: "
                             f"{exc}") from None
        hops.append((address, host))
    return tuple(hops)


def _login_user(host_name: str) -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no LOGNAME/USER and no passwd entry (some containers)
        raise InputError(f"host {host_name}: no `ssh: user:` in the inventory or ~/.ssh/config, and the login user "
                         f"cannot be found; add `user:` to the host's `ssh:`") from None


def ssh_route(name: str, host: Host, via: tuple[tuple[str, Host], ...] | None = None) -> SSHRoute:
    """Apply the operator's ssh_config to an inventory host: the inventory wins wherever it says
    something; the user defaults to the login user, as with `ssh`. `via`: the bastions already
    decided (a hop of a chain is reached through the hops before it)."""
    s = host.ssh
    given = s.model_fields_set
    options = _ssh_config_options(s, host.address)
    user = s.user or options.get("user") or _login_user(name)
    port = s.port if "port" in given else int(options.get("port", s.port))
    if s.key_file is not None:
        keys: tuple[str, ...] = (str(Path(s.key_file).expanduser()),)
    else:
        # ssh skips an IdentityFile that does not exist; so does drengine.
        keys = tuple(str(Path(k).expanduser()) for k in options.get("identityfile", []) if Path(k).expanduser().is_file())
    jump = host.jump_host()
    if via is not None:
        jumps: tuple[tuple[str, Host], ...] = via
    elif jump is not None:
        jumps = (*ssh_route(*jump).jumps, jump)
    elif s.proxy_jump is not None:
        raise InputError(f"host {name} names `proxy_jump: {s.proxy_jump}`, which only an inventory can resolve "
                         f"(load the host from its inventory)")
    elif options.get("proxyjump"):
        jumps = _jumps_from_config(str(options["proxyjump"]), s, name)
    else:
        jumps = ()
    return SSHRoute(str(options.get("hostname", host.address)), port, user, keys, s.key_file is not None, jumps)


class SSHTransport:
    """Run commands on a host over SSH (paramiko), verifying its key against known_hosts, through
    its bastions (`proxy_jump`) when it has them: each hop's key is verified too, and the
    connection to the host is a channel of the bastion's (ssh's ProxyJump, not agent forwarding).

    One connection is opened on first use and reused until close() or a command timeout.
    """

    def __init__(self, name: str, host: Host, via: tuple[tuple[str, Host], ...] | None = None) -> None:
        self.name = name
        self.host = host
        self.settings = host.ssh
        self._client: paramiko.SSHClient | None = None
        self._jump: SSHTransport | None = None
        self._lock = threading.Lock()
        self._via = via
        self._route: SSHRoute | None = None
        self._password: str | None = None

    @property
    def route(self) -> SSHRoute:
        if self._route is None:
            self._route = ssh_route(self.name, self.host, self._via)
        return self._route

    @property
    def target(self) -> str:
        r = self.route
        via = "".join(f" via {n}" for n, _ in reversed(r.jumps))
        return f"{r.user}@{r.address}:{r.port}{via}"

    # ---- connecting

    def _known_hosts_path(self) -> Path:
        return Path(self.settings.known_hosts).expanduser()

    def _host_key_name(self) -> str:
        port = self.route.port
        return self.route.address if port == 22 else f"[{self.route.address}]:{port}"

    def _open_socket(self, deadline: float) -> socket.socket | paramiko.Channel:
        """A TCP connection to the host, or a channel to it through its last bastion."""
        import paramiko

        r = self.route
        if not r.jumps:
            try:
                return socket.create_connection((r.address, r.port), timeout=self.settings.connect_timeout)
            except OSError as exc:
                raise self._unreachable(exc) from None
        if self._jump is None:
            # The last hop reaches this host; it reaches its own bastions the same way.
            jump_name, jump_host = r.jumps[-1]
            self._jump = SSHTransport(jump_name, jump_host, via=r.jumps[:-1])
        jump_client = self._jump._ensure()
        transport = jump_client.get_transport()
        try:
            if transport is None:
                raise paramiko.SSHException("the connection to the bastion closed")
            return transport.open_channel("direct-tcpip", (r.address, r.port), ("127.0.0.1", 0),
                                          timeout=max(0.1, deadline - time.monotonic()))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectError(f"host {self.name} ({self.target}): the bastion {self._jump.name} could not open a "
                               f"connection to {r.address}:{r.port}: {exc or type(exc).__name__} (is the host up, "
                               f"and may the bastion reach it? `AllowTcpForwarding` must be on there)") from None

    def _connect(self) -> paramiko.SSHClient:
        import paramiko

        s = self.settings
        r = self.route
        deadline = time.monotonic() + s.connect_timeout
        client = paramiko.SSHClient()
        known = self._known_hosts_path()
        if known.is_file():
            try:
                client.load_host_keys(str(known))
            except (OSError, paramiko.SSHException) as exc:
                raise ConnectError(f"host {self.name}: cannot read known_hosts file {known}: {exc}") from None
        # Never write what we learn back to the file: a lab key accepted once is not a trust decision.
        client.set_missing_host_key_policy(_make_accept_policy() if s.accept_unknown_host_keys else _make_reject_policy())
        try:
            # Our own socket so that the TCP connect, banner, key exchange and authentication
            # together stay within connect_timeout (paramiko would give each its own timeout).
            sock = self._open_socket(deadline)
        except DrengineError:
            client.close()
            raise
        remaining = max(0.1, deadline - time.monotonic())
        try:
            client.connect(
                r.address,
                port=r.port,
                username=r.user,
                key_filename=list(r.key_files) or None,  # type: ignore[arg-type]  # paramiko takes a list too
                # With the inventory's key_file, use only it: an agent or ~/.ssh keys would make a lab
                # or drill pass for reasons that do not hold on the operator's jump host.
                allow_agent=not r.only_key_files,
                look_for_keys=not r.key_files,
                timeout=remaining,
                banner_timeout=remaining,
                auth_timeout=remaining,
                channel_timeout=s.connect_timeout,
                sock=sock,
            )
        except BaseException as exc:
            client.close()
            sock.close()
            if isinstance(exc, Exception):
                raise self._connect_failure(exc, deadline) from None
            raise
        return client

    def _unreachable(self, exc: OSError) -> ConnectError:
        if isinstance(exc, (socket.timeout, TimeoutError)):
            why = f"no answer within the connect timeout of {self.settings.connect_timeout:g} s (host down, or a firewall dropping packets)"
        elif isinstance(exc, ConnectionRefusedError):
            why = "connection refused (the host is up but nothing listens on that port: sshd stopped, or wrong port)"
        else:
            why = f"{exc.strerror or exc} (no route to the host, or a wrong address)"
        return ConnectError(f"host {self.name} ({self.target}) is unreachable over SSH: {why}")

    def _connect_failure(self, exc: Exception, deadline: float) -> ConnectError:
        import paramiko

        known = self._known_hosts_path()
        name = self._host_key_name()
        if isinstance(exc, _UnknownHostKey):
            return ConnectError(
                f"host {self.name} ({self.target}) is not in the known_hosts file {known}: its key is unknown, so "
                f"drengine refuses to connect (it could be anyone answering on that address). The host offered "
                f"{fingerprint(exc.key)}. Check that fingerprint on the host itself (`ssh-keygen -lf "
                f"/etc/ssh/ssh_host_{exc.key.get_name().removeprefix('ssh-')}_key.pub` on its console), then add it "
                f"with `ssh-keyscan -p {self.route.port} {self.route.address} >> {known}` and compare "
                f"`ssh-keygen -lf {known}`. The `accept_unknown_host_keys: true` setting exists only for "
                f"throw-away lab hosts."
            )
        if isinstance(exc, paramiko.BadHostKeyException):
            return ConnectError(
                f"host {self.name} ({self.target}): its host key CHANGED. known_hosts ({known}) expects "
                f"{fingerprint(exc.expected_key)} but the host now offers {fingerprint(exc.key)}. This is either "
                f"a man-in-the-middle attack or a reinstalled host. Do not continue until you have confirmed the "
                f"new key on the host itself; then remove the old entry with `ssh-keygen -R '{name}' -f {known}` "
                f"and add the new one."
            )
        if isinstance(exc, paramiko.PasswordRequiredException):
            return ConnectError(
                f"host {self.name}: the key file {', '.join(self.route.key_files)} is protected by a passphrase; "
                f"drengine runs unattended and needs an unencrypted key or an ssh-agent (leave key_file empty)"
            )
        if isinstance(exc, paramiko.AuthenticationException):
            r = self.route
            files = "key file" + ("s" if len(r.key_files) > 1 else "")
            key = f"{files} {', '.join(r.key_files)}" if r.key_files else "the ssh-agent and ~/.ssh keys"
            key += "" if r.only_key_files or not r.key_files else " and the ssh-agent"
            return ConnectError(
                f"host {self.name} ({self.target}): authentication as {r.user} failed with {key}. "
                f"Is its public key in {r.user}'s authorized_keys on the host, and is that user allowed "
                f"to log in with a key (and from this address: sshd's AllowUsers, Match Address)?"
            )
        if isinstance(exc, FileNotFoundError) or (isinstance(exc, OSError) and exc.filename):
            return ConnectError(f"host {self.name}: cannot read the SSH key file {', '.join(self.route.key_files)}: "
                                f"{exc.strerror}")
        if isinstance(exc, (socket.timeout, TimeoutError)) or time.monotonic() >= deadline:
            return ConnectError(
                f"host {self.name} ({self.target}) accepted the TCP connection but its SSH server did not complete "
                f"the handshake within {self.settings.connect_timeout:g} s (sshd hung or overloaded)"
            )
        if isinstance(exc, OSError):
            return self._unreachable(exc)
        return ConnectError(f"host {self.name} ({self.target}): SSH connection failed: {exc}")

    def _ensure(self) -> paramiko.SSHClient:
        with self._lock:
            if self._client is None or not self._is_active(self._client):
                if self._client is not None:
                    self._client.close()
                try:
                    self._client = self._connect()
                except BaseException:
                    # A bastion kept open for a host that refused us would outlive every close().
                    if self._jump is not None:
                        self._jump.close()
                        self._jump = None
                    raise
            return self._client

    @staticmethod
    def _is_active(client: paramiko.SSHClient) -> bool:
        t = client.get_transport()
        return t is not None and t.is_active()

    # ---- running

    def _sudo_answerer(self) -> _SudoAnswerer:
        if not self.host.become or self.host.become_password is None:
            return _SudoAnswerer(self.name, None, "")
        if self._password is None:
            self._password = self.host.become_password.resolve(f"host {self.name}: become_password")
        return _SudoAnswerer(self.name, self._password, self.host.become_password.describe())

    def run(self, command: Command, timeout: float | None = None) -> CommandResult:
        import paramiko

        shown = as_sent(self.host, command)
        limit = self.settings.command_timeout if timeout is None else timeout
        sudo = self._sudo_answerer()
        client = self._ensure()
        started = time.monotonic()
        deadline = started + limit
        transport = client.get_transport()
        if transport is None:
            raise ConnectError(f"host {self.name}: the SSH connection closed before `{shown}` could be sent")
        # paramiko waits without a timeout for the answer to an exec request; a host that hangs
        # right then would hold us forever. The watchdog closes the connection at the deadline,
        # which wakes every waiter.
        abandoned = threading.Event()

        def abandon() -> None:
            abandoned.set()
            transport.close()

        watchdog = threading.Timer(limit, abandon)
        watchdog.daemon = True
        watchdog.start()
        out, err = bytearray(), bytearray()
        truncated = False
        chan: paramiko.Channel | None = None
        try:
            chan = transport.open_session(timeout=min(limit, self.settings.connect_timeout))
            chan.exec_command(shown)
            exited_at: float | None = None
            while True:
                got = False
                while chan.recv_ready():
                    got = True
                    truncated |= _append(out, chan.recv(65536))
                while chan.recv_stderr_ready():
                    got = True
                    truncated |= _append(err, chan.recv_stderr(65536))
                sudo.answer(chan, err)
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    # OpenSSH may send the exit status before the last of stderr; its EOF comes once
                    # both streams are drained. A background child still holding them must not keep
                    # us here, so the EOF is awaited only briefly.
                    exited_at = exited_at if exited_at is not None else time.monotonic()
                    if chan.eof_received or time.monotonic() - exited_at >= EOF_GRACE_SECONDS:
                        break
                if abandoned.is_set() or time.monotonic() >= deadline:
                    raise TimeoutError
                if not got:
                    # Once the exit status is in, status_event stays set: pause instead of spinning.
                    (time.sleep if exited_at is not None else chan.status_event.wait)(0.02)
            if abandoned.is_set():
                raise TimeoutError  # the watchdog's close also marks the channel as finished
            status = chan.recv_exit_status()
            if status == -1 and chan.closed:
                raise EOFError("the channel closed without an exit status (sshd or the connection died)")
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            if abandoned.is_set() or time.monotonic() >= deadline:
                raise ProbeTimeout(
                    REDACTOR.text(
                        f"on host {self.name}, `{shown}` did not finish within {limit:g} s; drengine abandoned it "
                        f"and closed the SSH connection (the remote command may still be running). "
                        f"Raise command_timeout if it is merely slow."
                    )
                ) from None
            raise ConnectError(
                REDACTOR.text(f"host {self.name} ({self.target}): the SSH connection failed during `{shown}`: {exc}")
            ) from None
        finally:
            watchdog.cancel()
            if chan is not None:
                chan.close()
        _raise_if_sudo_refused(self.host, self.name, status, bytes(err))
        return CommandResult(
            self.name,
            shown,
            status,
            _decode(bytes(out), truncated),
            _decode(bytes(err), truncated),
            time.monotonic() - started,
        )

    def read_file(self, path: str) -> str:
        # `cat` over the same channel rather than SFTP: it needs no sftp subsystem on the host.
        result = self.run(["cat", "--", path])
        if result.exit_status != 0:
            raise CommandFailed(f"on host {self.name}, cannot read {path}: {result.stderr.strip() or 'cat failed'}")
        return result.stdout

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
            if self._jump is not None:
                self._jump.close()
                self._jump = None


def _append(buf: bytearray, data: bytes) -> bool:
    """Append up to the output limit; True when something was dropped."""
    room = MAX_OUTPUT_BYTES - len(buf)
    buf.extend(data[: max(0, room)])
    return len(data) > room


# --------------------------------------------------------------------------- choosing and fan-out


def transport_for(host: Host, name: str | None = None) -> HostTransport:
    """The transport the inventory asks for; `name` (the inventory key) labels results and errors."""
    label = name or host.address
    if host.transport == Transport.LOCAL:
        return LocalTransport(label, command_timeout=host.ssh.command_timeout, host=host)
    return SSHTransport(label, host)


def member_transport(inventory: Inventory | None, cluster: str, member: Member, purpose: str) -> HostTransport:
    """The one rule for reaching a member's host: the inventory host named by the member's `host:`,
    over that host's transport (`local` is this machine, `ssh` another one). A member without
    `host:` is refused, whatever its address: 127.0.0.1 may be a tunnel to another machine, and a
    pid file read, or a service started, on the wrong machine hits the wrong server. `purpose`
    says what could not be done, for the message."""
    if member.host is None:
        raise ConnectError(
            f"cluster {cluster}: member {member.name} has no `host:` in the inventory, so drengine cannot {purpose}: "
            f"it never guesses which machine runs a member (an address such as 127.0.0.1 may be a tunnel). "
            f"Add `host: NAME` to the member, and NAME under `hosts:` with `transport: local` (this machine) "
            f"or `transport: ssh`"
        )
    host = inventory.hosts.get(member.host) if inventory is not None else None
    if host is None:
        raise ConnectError(f"cluster {cluster}: member {member.name} runs on host {member.host!r}, which the inventory "
                           f"does not define under `hosts:`; drengine cannot {purpose}")
    return transport_for(host, member.host)


class MemberTransports:
    """The transports to a cluster's member hosts, opened once per host on first use (by the rule of
    `member_transport`) and closed together; safe to share between threads."""

    def __init__(self, inventory: Inventory | None, cluster: str) -> None:
        self.inventory = inventory
        self.cluster = cluster
        self._open: dict[str, HostTransport] = {}
        self._lock = threading.Lock()

    def of(self, member: Member, purpose: str) -> HostTransport:
        with self._lock:
            transport = self._open.get(member.host or "")
            if transport is None:
                transport = member_transport(self.inventory, self.cluster, member, purpose)
                self._open[member.host or ""] = transport
            return transport

    def close(self) -> None:
        with self._lock:
            for transport in self._open.values():
                transport.close()
            self._open.clear()


def _jump_chain(host: Host) -> list[str]:
    """The inventory bastions in front of a host (its ssh_config ProxyJump hops are not counted)."""
    chain: list[str] = []
    jump = host.jump_host()
    while jump is not None and jump[0] not in chain:
        chain.append(jump[0])
        jump = jump[1].jump_host()
    return chain


def _budget(target: Host | HostTransport, timeout: float | None) -> float:
    if isinstance(target, Host):
        # Each bastion on the way is one more connection to open first.
        hops = 1 + len(_jump_chain(target))
        return hops * target.ssh.connect_timeout + (timeout if timeout is not None else target.ssh.command_timeout)
    if isinstance(target, SSHTransport):
        hops = 1 + len(_jump_chain(target.host))
        return hops * target.settings.connect_timeout + (timeout if timeout is not None else target.settings.command_timeout)
    if isinstance(target, LocalTransport):
        return timeout if timeout is not None else target.command_timeout
    return timeout if timeout is not None else 60.0


def run_on_hosts(
    pairs: Iterable[tuple[str, Host | HostTransport]] | Mapping[str, Host | HostTransport],
    command: Command,
    max_parallel: int = 8,
    timeout: float | None = None,
) -> dict[str, CommandResult | DrengineError]:
    """Run one command on many hosts at once (at most `max_parallel` at a time).

    Each host gets its own result or error; a failing or hung host never hides the
    others. Transports passed in stay open (the caller owns them); transports made
    here from Host entries are closed.
    """
    items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise InputError(f"run_on_hosts: host names must be unique, got {names}")
    command_text(command)  # refuse a malformed command once, before touching any host
    results: dict[str, CommandResult | DrengineError] = {}
    if not items:
        return results
    workers = max(1, min(max_parallel, len(items)))

    def one(name: str, target: Host | HostTransport) -> CommandResult | DrengineError:
        transport = transport_for(target, name) if isinstance(target, Host) else target
        try:
            return transport.run(command, timeout=timeout)
        except DrengineError as exc:
            return exc
        finally:
            if isinstance(target, Host):
                transport.close()

    # A safety net on top of each transport's own timeouts: the pool runs `workers` hosts at a
    # time, so the slowest possible finish is one budget per round.
    rounds = -(-len(items) // workers)
    overall = rounds * max(_budget(t, timeout) for _, t in items) + FANOUT_GRACE_SECONDS
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="drengine-host")
    futures: dict[Future[CommandResult | DrengineError], str] = {pool.submit(one, n, t): n for n, t in items}
    try:
        done, _ = wait_futures(futures, timeout=overall)
        for future, name in futures.items():
            if future in done:
                results[name] = future.result()
            else:
                results[name] = ProbeTimeout(
                    f"host {name} did not answer within {overall:g} s (its transport timeouts did not fire); "
                    f"drengine stopped waiting for it"
                )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return {n: results[n] for n in names}


__all__ = [
    "Command",
    "CommandResult",
    "HostTransport",
    "LocalTransport",
    "MemberTransports",
    "SUDO_PROMPT",
    "SSHRoute",
    "SSHTransport",
    "ShellCommand",
    "as_sent",
    "command_text",
    "elevate",
    "ssh_route",
    "fingerprint",
    "member_transport",
    "render_service",
    "render_template",
    "run_on_hosts",
    "transport_for",
]
