"""HAProxy as a part of the cluster: its runtime API, and its simulated twin.

The runtime API takes one command per connection: `show servers state` (a table whose
columns are named on its header line), `set server BACKEND/SERVER state ready|drain|maint`
and `shutdown sessions server BACKEND/SERVER` (both answer an empty line on success, an
error sentence otherwise). drengine reaches it on a unix socket or a TCP stats socket from
this machine, or over an inventory host's transport with `socat`, which is also the exact
command an operator could type by hand and what plans and gates show.

A server's admin state is ready, drain (no new connections) or maint (no traffic at all);
its health is what HAProxy's own checks say (up, down, starting, stopping).
"""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import BaseModel

from drengine.errors import CommandFailed, ConnectError
from drengine.inventory import Cluster, Proxy, ProxyBackend
from drengine.steps import Fact, Statement, fact
from drengine.transport import HostTransport, ShellCommand, as_sent, command_text, render_template

AdminState = Literal["ready", "drain", "maint"]
# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced, inherited, resolution and hostname maintenance; forced
# and inherited drain. 0x04 (CMAINT) only records `disabled` in the configuration: it stays set once the
# server is made ready, and is not part of HAProxy's own SRV_ADMF_MAINT mask.
MAINT_BITS = 0x01 | 0x02 | 0x20 | 0x40
DRAIN_BITS = 0x08 | 0x10
HEALTH = {"0": "down", "1": "starting", "2": "up", "3": "stopping"}
ADMIN_STATES: dict[str, AdminState] = {"ready": "ready", "drain": "drain", "maint": "maint"}
MAX_ANSWER = 1 << 20


@fact
class ProxyServer(Fact):
    """One server line of one backend, as HAProxy reported it."""

    backend: str
    server: str
    member: str  # the cluster member the inventory maps it to ("" if none)
    role: str  # write or read
    admin: AdminState
    health: str  # up, down, starting, stopping
    address: str = ""
    sessions: int = 0  # open sessions through this server (`show stat` scur)

    def describe(self) -> str:
        return f"{self.backend}/{self.server} ({self.member or '?'}) {self.admin}, health {self.health}"


@fact
class ProxyView(Fact):
    proxy: str
    servers: list[ProxyServer] = []
    error: str = ""  # the runtime API could not be reached

    def of(self, member: str) -> list[ProxyServer]:
        return [s for s in self.servers if s.member == member]

    def ready_writers(self) -> list[str]:
        return [s.member for s in self.servers if s.role == "write" and s.admin == "ready"]

    def describe(self) -> str:
        if self.error:
            return f"proxy {self.proxy}: UNREACHABLE: {self.error}"
        backends: dict[str, list[str]] = {}
        for s in self.servers:
            backends.setdefault(s.backend, []).append(f"{s.member or s.server} {s.admin}"
                                                      + ("" if s.health == "up" else f" ({s.health})")
                                                      + (f" {s.sessions} session(s)" if s.sessions else ""))
        return f"proxy {self.proxy}: " + "; ".join(f"{b} [{', '.join(v)}]" for b, v in backends.items())


def set_state_command(backend: str, server: str, state: AdminState) -> str:
    return f"set server {backend}/{server} state {state}"


def shutdown_sessions_command(backend: str, server: str) -> str:
    return f"shutdown sessions server {backend}/{server}"


def shell_command(proxy: Proxy, command: str) -> ShellCommand:
    """The runtime API command as one shell line (socat), values quoted. `-t` gives HAProxy the
    API's timeout to answer once the command is sent (socat's default, 0.5 s, would cut a busy
    HAProxy's answer short and exit 0 as if it had answered nothing)."""
    api = proxy.api
    if api.socket is not None:
        return render_template("echo {command} | socat -t {timeout} stdio UNIX-CONNECT:{socket}", command=command,
                               timeout=f"{api.timeout:g}", socket=api.socket)
    return render_template("echo {command} | socat -t {timeout} stdio TCP:{address}:{port}", command=command,
                           timeout=f"{api.timeout:g}", address=api.address or "", port=api.port or 0)


def statement(cluster: Cluster, proxy: Proxy, command: str) -> Statement:
    """The runtime API command as the journal shows it: the exact line sent, with the sudo of the
    host it runs over when that host has `become: true`."""
    host = cluster.proxy_host(proxy)
    shell = shell_command(proxy, command)
    return Statement(target=f"proxy {proxy.name}", text=as_sent(host, shell) if host is not None else command_text(shell),
                     language="shell")


def parse_sessions(text: str) -> dict[tuple[str, str], int]:
    """Current sessions per (backend, server) from `show stat` (CSV with a `# pxname,svname,...` header)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#"):
        return {}
    columns = lines[0].lstrip("# ").split(",")
    out = {}
    for line in lines[1:]:
        row = dict(zip(columns, line.split(","), strict=False))
        if row.get("scur", "").isdigit():
            out[(row.get("pxname", ""), row.get("svname", ""))] = int(row["scur"])
    return out


def parse_servers_state(text: str, proxy: Proxy) -> list[ProxyServer]:
    """Parse `show servers state`: a version line, a `# col col ...` header, one line per server."""
    columns: list[str] = []
    members = {(b.name, server): (member, b.role) for b in proxy.backends for member, server in b.servers.items()}
    out: list[ProxyServer] = []
    for line in text.splitlines():
        if line.startswith("#"):
            columns = line.lstrip("#").split()
            continue
        fields = line.split()
        if not columns or len(fields) < len(columns):
            continue
        row = dict(zip(columns, fields, strict=False))
        backend, server = row.get("be_name", ""), row.get("srv_name", "")
        if (backend, server) not in members:
            continue
        admin_bits = int(row.get("srv_admin_state", "0"))
        admin: AdminState = "maint" if admin_bits & MAINT_BITS else ("drain" if admin_bits & DRAIN_BITS else "ready")
        member, role = members[(backend, server)]
        out.append(ProxyServer(backend=backend, server=server, member=member, role=role, admin=admin,
                               health=HEALTH.get(row.get("srv_op_state", ""), "unknown"),
                               address=f"{row.get('srv_addr', '')}:{row.get('srv_port', '')}"))
    if not columns:
        raise CommandFailed(f"proxy {proxy.name}: `show servers state` answered without its header line: {text[:200]!r}")
    return out


class HAProxyAPI:
    """The runtime API of one HAProxy, locally (socket) or over its host's transport (socat)."""

    def __init__(self, proxy: Proxy, transport: HostTransport | None = None) -> None:
        self.proxy = proxy
        self.transport = transport

    def send(self, command: str) -> str:
        """Send one command and return HAProxy's answer."""
        if self.transport is not None:
            return self._send_over_host(self.transport, command)
        return self._send_local(command)

    def _where(self) -> str:
        api = self.proxy.api
        return api.socket or f"{api.address}:{api.port}"

    def _send_over_host(self, transport: HostTransport, command: str) -> str:
        """socat on the proxy's host; every failure names the proxy, the host and what to check."""
        name, host, where = self.proxy.name, transport.name, self._where()
        try:
            result = transport.run(shell_command(self.proxy, command), timeout=self.proxy.api.timeout + 5)
        except ConnectError as exc:  # ProbeTimeout included: the host or the command hung
            raise type(exc)(f"proxy {name}: cannot use its runtime API over host {host}: {exc}") from None
        tail = (result.stderr.strip() or result.stdout.strip())[-500:]
        if result.exit_status == 127:  # the shell's "command not found"
            raise ConnectError(f"proxy {name}: socat is not installed on host {host} (or not on its PATH); drengine "
                               f"reaches the runtime API at {where} through it. Install it there (Debian: `apt-get "
                               f"install socat`). The shell said: {tail}")
        if not result.ok:
            raise ConnectError(f"proxy {name}: socat on host {host} cannot reach the runtime API at {where} (exit "
                               f"status {result.exit_status}: {tail}); is HAProxy running there with `stats socket "
                               f"{where} level admin`, and is that the path in the inventory?")
        if not result.stdout:
            # HAProxy answers at least an empty line; nothing at all means it never answered (hung or
            # overloaded), and a command it reads once it wakes may still take effect then.
            raise ConnectError(f"proxy {name}: the runtime API at {where} on host {host} gave no answer within "
                               f"{self.proxy.api.timeout:g} s to `{command}` (HAProxy hung or overloaded); it may "
                               f"still act on it when it wakes: look again before deciding")
        return result.stdout

    def _send_local(self, command: str) -> str:
        api = self.proxy.api
        where = self._where()
        family = socket.AF_UNIX if api.socket is not None else socket.AF_INET
        target: str | tuple[str, int] = api.socket if api.socket is not None else (api.address or "", api.port or 0)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as conn:
                conn.settimeout(api.timeout)
                conn.connect(target)
                conn.sendall(command.encode() + b"\n")
                chunks: list[bytes] = []
                size = 0
                while size < MAX_ANSWER:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
        except TimeoutError:
            raise ConnectError(f"proxy {self.proxy.name}: the runtime API at {where} gave no answer within "
                               f"{api.timeout:g} s") from None
        except OSError as exc:
            raise ConnectError(f"proxy {self.proxy.name}: cannot reach the runtime API at {where}: {exc.strerror or exc} "
                               f"(is HAProxy running with `stats socket ... level admin`?)") from None
        return b"".join(chunks).decode(errors="replace")

    def command(self, command: str) -> None:
        """A command that answers nothing on success (set server, shutdown sessions)."""
        answer = self.send(command).strip()
        if answer:
            raise CommandFailed(f"proxy {self.proxy.name}: `{command}` was refused: {answer[:300]}")

    def view(self) -> ProxyView:
        try:
            servers = parse_servers_state(self.send("show servers state"), self.proxy)
            sessions = parse_sessions(self.send("show stat"))
        except (ConnectError, CommandFailed) as exc:
            return ProxyView(proxy=self.proxy.name, error=str(exc))
        return ProxyView(proxy=self.proxy.name, servers=[
            s.model_copy(update={"sessions": sessions.get((s.backend, s.server), 0)}) for s in servers])


# -- the simulated twin -----------------------------------------------------------------------------


class SimProxy(BaseModel):
    """One simulated HAProxy: the admin state of each backend's servers (health comes from the
    simulated members, like HAProxy's TCP checks: a hung server still accepts connections)."""

    name: str
    admin: dict[str, dict[str, AdminState]]  # backend -> server -> state

    def view(self, proxy: Proxy, health: dict[str, str]) -> ProxyView:
        servers = []
        for backend in proxy.backends:
            for member, server in backend.servers.items():
                servers.append(ProxyServer(backend=backend.name, server=server, member=member, role=backend.role,
                                           admin=self.admin.get(backend.name, {}).get(server, "ready"),
                                           health=health.get(member, "down")))
        return ProxyView(proxy=self.name, servers=servers)

    def apply(self, proxy: Proxy, command: str) -> None:
        """Interpret `set server B/S state X` and `shutdown sessions server B/S` as HAProxy would."""
        words = command.split()
        if words[:2] == ["set", "server"] and len(words) == 5 and words[3] == "state":
            backend, _, server = words[2].partition("/")
            state = ADMIN_STATES.get(words[4])
            if state is None:
                raise CommandFailed(f"proxy {self.name}: `{command}` was refused: 'set server <srv> state' expects "
                                    f"'ready', 'drain' and 'maint'.")
            self._known(proxy, backend, server, command)
            self.admin.setdefault(backend, {})[server] = state
            return
        if words[:3] == ["shutdown", "sessions", "server"] and len(words) == 4:
            backend, _, server = words[3].partition("/")
            self._known(proxy, backend, server, command)
            return
        raise CommandFailed(f"proxy {self.name}: the simulated HAProxy does not understand `{command}`")

    def _known(self, proxy: Proxy, backend: str, server: str, command: str) -> None:
        found = [b for b in proxy.backends if b.name == backend]
        if not found:
            raise CommandFailed(f"proxy {self.name}: `{command}` was refused: No such backend.")
        if server not in found[0].servers.values():
            raise CommandFailed(f"proxy {self.name}: `{command}` was refused: No such server.")

    def writer(self, proxy: Proxy, alive: dict[str, bool]) -> str | None:
        """The member a new connection to the write frontend reaches (`balance first`): the
        first ready server of the first write backend whose member accepts connections."""
        for backend in _write_backends(proxy):
            for member, server in backend.servers.items():
                if self.admin.get(backend.name, {}).get(server, "ready") == "ready" and alive.get(member, False):
                    return member
        return None


def _write_backends(proxy: Proxy) -> list[ProxyBackend]:
    return [b for b in proxy.backends if b.role == "write"]


def sim_proxies(cluster: Cluster, primary: str | None, existing: list[SimProxy] | None = None) -> list[SimProxy]:
    """The simulated proxies of a cluster: those already in the state, and new ones pointing their
    write backends at `primary` (the others in the proxy's standby state), read backends all ready."""
    have = {p.name: p for p in existing or []}
    out = []
    for proxy in cluster.proxies:
        if proxy.name in have:
            out.append(have[proxy.name])
            continue
        admin: dict[str, dict[str, AdminState]] = {}
        for backend in proxy.backends:
            standby: AdminState = "drain" if proxy.standby == "drain" else "maint"
            admin[backend.name] = {server: ("ready" if backend.role == "read" or member == primary else standby)
                                   for member, server in backend.servers.items()}
        out.append(SimProxy(name=proxy.name, admin=admin))
    return out
