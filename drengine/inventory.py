"""Inventories: where the clusters are, how to reach their members, and where their secrets live.

An inventory is YAML validated into the models below; every problem is reported as
`FILE:LINE: what is wrong and what is expected`. Secrets are references (an environment
variable or a file), resolved only when a connector needs them and registered with the
redactor so that they never reach a journal, a report or the terminal.
"""

from __future__ import annotations

import ipaddress
import os
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drengine.datastores import check_kind
from drengine.errors import InputError
from drengine.redact import REDACTOR
from drengine.yamlsrc import load_yaml, validate

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")

Name = Annotated[str, Field(pattern=NAME_RE.pattern, description="letters, digits, '.', '_' and '-'")]

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds (a number), or a number with a unit: `90s`, `30m`, `4h`, `2d`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        found = _DURATION_RE.match(str(value))
        if found is None:
            raise ValueError(f"{value!r} is not a duration; expected seconds or a number with s, m, h or d (e.g. 4h)")
        seconds = float(found.group(1)) * _UNITS[found.group(2) or "s"]
    if seconds <= 0:
        raise ValueError("a duration must be above 0")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
# How long each kind of change-ledger entry may stay open before a cluster needs action
# (`drengine status` exits 1), e.g. {ceph.flag: 4h}; kinds are checked against the datastores' own.
UndoWithin = dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+\.[a-z0-9_.]+$")], Duration]


def check_address(value: str) -> str:
    """An IP address or a DNS name; anything else (spaces, quotes, `;`, `$(...)`) is refused."""
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not HOSTNAME_RE.match(value):
        raise ValueError("expected an IP address or a DNS host name (letters, digits, '-' and '.')")
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(Strict):
    """A secret named by reference: `{env: VAR}` or `{file: PATH}`. Never the value itself."""

    env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret needs exactly one of `env: VARIABLE` or `file: PATH`")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env else f"file {self.file}"

    def resolve(self, where: str) -> str:
        """Read the secret now; register it with the redactor before anyone can print it."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise InputError(
                    f"{where}: the secret is read from environment variable {self.env}, which is not set; "
                    f"export it before running drengine"
                )
        else:
            assert self.file is not None
            try:
                value = Path(self.file).expanduser().read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                raise InputError(
                    f"{where}: cannot read the secret file {self.file} ({exc.strerror}); "
                    f"expected a readable file holding only the secret"
                ) from None
        REDACTOR.add(value)
        return value


class Credentials(Strict):
    user: str = Field(default="root", pattern=r"^[A-Za-z0-9_.@-]{1,80}$")
    password: SecretRef | None = None


class Timeouts(Strict):
    """Seconds. Every probe and statement is bounded by these: a hung member must not stall a run."""

    connect: float = Field(default=2.0, gt=0, le=300)
    read: float = Field(default=5.0, gt=0, le=3600)
    catch_up: float = Field(default=30.0, gt=0, le=86400, description="waiting for a replica to apply what it received")

    @property
    def backstop(self) -> float:
        """How long to wait for probes the client already bounds by connect + read before calling
        them stuck: twice that, plus a second, because a loaded machine runs its threads late
        (issue 25, item 7: at a load of 3.5 on 2 cores, connect + read + 0.8 s was not enough)."""
        return 2 * (self.connect + self.read) + 1.0


class SSHSettings(Strict):
    """How to log in to a host. What the inventory leaves out comes from the operator's
    `ssh_config` (User, Port, IdentityFile, ProxyJump, HostName for the address), as `ssh` would
    use it; what the inventory says wins. `user` defaults to the login user, as with `ssh`."""

    user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,32}$",
                             description="default: ssh_config's User, else the user running drengine")
    port: int = Field(default=22, ge=1, le=65535, description="default: ssh_config's Port, else 22")
    key_file: str | None = Field(default=None, description="default: ssh_config's IdentityFile, the ssh-agent, ~/.ssh keys")
    known_hosts: str = "~/.ssh/known_hosts"
    proxy_jump: Name | None = Field(default=None, description="reach this host through that inventory host (a bastion); "
                                                              "default: ssh_config's ProxyJump")
    ssh_config: str | None = Field(default="~/.ssh/config", description="the OpenSSH client config to honour; "
                                                                        "null: ignore it")
    # Only for throw-away lab hosts: never trust a new key silently in production.
    accept_unknown_host_keys: bool = False
    connect_timeout: float = Field(default=5.0, gt=0, le=300)
    command_timeout: float = Field(default=60.0, gt=0, le=86400)


class Transport(str, Enum):
    SSH = "ssh"
    LOCAL = "local"


class Host(Strict):
    address: str
    transport: Transport = Transport.SSH
    ssh: SSHSettings = SSHSettings()
    # Operators log in as themselves and use sudo; root logins stay off. Every command that
    # needs root on this host (service control, signals, faults, pid files) runs under
    # `sudo -n`, or `sudo -S` fed become_password when the site's sudoers asks for one.
    become: bool = Field(default=False, description="run host commands through sudo (as root)")
    become_password: SecretRef | None = Field(default=None, description="sudo's password, when sudoers asks for one")

    # The inventory host named by `ssh.proxy_jump`, filled in by Inventory (a Host alone cannot see it).
    _jump: tuple[str, Host] | None = PrivateAttr(default=None)

    def jump_host(self) -> tuple[str, Host] | None:
        """(name, host) of the bastion this host is reached through, when the inventory names one."""
        return self._jump

    @model_validator(mode="after")
    def _password_needs_become(self) -> Host:
        if self.become_password is not None and not self.become:
            raise ValueError("`become_password:` is set but `become:` is not true; add `become: true` or remove it")
        return self

    _addr = field_validator("address")(check_address)


class ServiceControl(Strict):
    """Shell command templates for a member's service, shown verbatim in plans.

    Placeholders: {name}, {address}, {port}, {data_dir}; each value is shell-quoted when substituted.
    """

    start: str | None = None
    stop: str | None = None
    bootstrap: str | None = None
    recover: str | None = None
    status: str | None = None


class Member(Strict):
    name: Name
    address: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="0 means the datastore's default port")
    host: Name | None = Field(default=None, description="the inventory host that runs this member (for SSH)")
    role: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_-]{0,30}$")
    data_dir: str | None = Field(default=None, pattern=r"^/[^\x00\n]*$")
    pid_file: str | None = Field(default=None, pattern=r"^/[^\x00\n]*$")

    _addr = field_validator("address")(check_address)


class Simulated(Strict):
    scenario: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,60}$")
    state_file: str | None = None
    # Simulators that model time (heartbeats, elections, recoveries) run this many times faster
    # than real time, unless the run gives them its own clock.
    speed: float = Field(default=1.0, gt=0, le=100000)


class FenceMethod(str, Enum):
    """Ways to make sure a member about to be replaced can no longer take writes (fencing).
    `sql`: the datastore's own commands on a member that answers (MariaDB: read_only and
    KILL; MongoDB: replSetStepDown, then shutdown); `service`: the inventory's stop template
    over the member's host; `signal`: SIGKILL by the member's pid file over its host (reaches a
    hung process); `proxy`: out of every HAProxy backend that serves it."""

    SQL = "sql"
    SERVICE = "service"
    SIGNAL = "signal"
    PROXY = "proxy"


DEFAULT_FENCING = (FenceMethod.SQL, FenceMethod.SERVICE, FenceMethod.SIGNAL, FenceMethod.PROXY)
ProxyName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$",
                                 description="an HAProxy backend or server name")]


class Endpoint(Strict):
    address: str = "127.0.0.1"
    port: int = Field(ge=1, le=65535)

    _addr = field_validator("address")(check_address)


class ProxyRuntimeAPI(Strict):
    """HAProxy's runtime API: a unix socket (`stats socket PATH level admin`) or a TCP stats socket."""

    socket: str | None = Field(default=None, pattern=r"^/[^\x00\n]*$")
    address: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    timeout: float = Field(default=2.0, gt=0, le=60)

    _addr = field_validator("address")(lambda v: v if v is None else check_address(v))

    @model_validator(mode="after")
    def _one_way(self) -> ProxyRuntimeAPI:
        if (self.socket is None) == (self.address is None or self.port is None):
            raise ValueError("the runtime API needs exactly one of `socket: PATH` or `address:` with `port:`")
        return self


class ProxyBackend(Strict):
    name: ProxyName
    role: str = Field(default="write", pattern=r"^(write|read)$",
                      description="write: only the primary is ready; read: the members that serve reads")
    servers: dict[Name, ProxyName] = Field(min_length=1, description="member name -> HAProxy server name")


class Proxy(Strict):
    """An HAProxy in front of the cluster, driven through its runtime API."""

    name: Name
    host: Name | None = Field(default=None, description="reach the runtime API over this inventory host (socat); "
                                                         "none: from the machine drengine runs on")
    api: ProxyRuntimeAPI
    frontend: Endpoint | None = Field(default=None, description="the write frontend applications use (canaries)")
    credentials: Credentials | None = Field(default=None, description="the account applications use through the "
                                                                    "frontend; default: the cluster's")
    backends: list[ProxyBackend] = Field(min_length=1)
    standby: str = Field(default="maint", pattern=r"^(maint|drain)$",
                         description="what the other members of a write backend become when traffic is switched")
    rejoined: str = Field(default="maint", pattern=r"^(ready|maint)$",
                          description="what a rejoined member becomes in the read backends")


class CephOptions(Strict):
    conf_file: str = "/etc/ceph/ceph.conf"
    client_name: str = Field(default="client.admin", pattern=r"^client\.[A-Za-z0-9_.-]+$")
    keyring: str | None = None


class LocalLockSettings(Strict):
    """One run per cluster on this machine: a kernel lock (flock) on a file in `dir`."""

    backend: Literal["local"]
    dir: str | None = Field(default=None, description="default $DRENGINE_LOCK_DIR, else ~/.local/state/drengine/locks")


class EtcdTLS(Strict):
    """Files for TLS to etcd: the CA that signed the members' certificates, and a client certificate."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    @model_validator(mode="after")
    def _pair(self) -> EtcdTLS:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both `cert_file` and `key_file`")
        return self


def check_endpoint(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ValueError("expected an etcd client URL such as http://10.0.0.5:2379 or https://etcd1.example:2379")
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        raise ValueError("the etcd client URL needs its port (etcd listens on 2379 by default)")
    check_address(parts.hostname)
    return value.rstrip("/")


class EtcdLockSettings(Strict):
    """One run per cluster across the team: a lease-backed key in etcd (v3, through its JSON gateway)."""

    backend: Literal["etcd"]
    endpoints: list[Annotated[str, AfterValidator(check_endpoint)]] = Field(min_length=1, max_length=15)
    prefix: str = Field(default="/drengine", pattern=r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$")
    lease_ttl: int = Field(default=10, ge=2, le=600, description="seconds a lease outlives its last keep-alive")
    timeout: float = Field(default=2.0, gt=0, le=60, description="seconds per request to one etcd member")
    tls: EtcdTLS | None = None
    user: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.@-]{1,80}$")
    password: SecretRef | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EtcdLockSettings:
        if (self.user is None) != (self.password is None):
            raise ValueError("etcd authentication needs both `user` and `password` (a secret reference), or neither")
        if self.lease_ttl < 2 * self.timeout:
            raise ValueError(
                f"lease_ttl ({self.lease_ttl} s) must be at least twice the request timeout ({self.timeout:g} s), "
                f"so that one slow keep-alive does not lose the lock"
            )
        schemes = {urlsplit(e).scheme for e in self.endpoints}
        if self.tls is not None and schemes != {"https"}:
            raise ValueError("`tls:` is set but not every endpoint is https://")
        return self


LockSettings = Annotated[LocalLockSettings | EtcdLockSettings, Field(discriminator="backend")]


class Approvals(Strict):
    """How many different people approve a gate before its step runs: `approvals: {dangerous: 2}`
    is the two-person rule (drengine/approvals.py). The others approve with `drengine approve RUN_ID`
    through the run registry, from any terminal or machine."""

    dangerous: int = Field(default=1, ge=1, le=5, description="people who approve a dangerous gate")
    confirm: int = Field(default=1, ge=1, le=5, description="people who approve an ordinary confirmation gate")
    wait: float | None = Field(default=None, gt=0, description="seconds a gate waits for the other approvals before "
                                                               "the run stops (resumable); default: until answered")

    def needed(self, dangerous: bool) -> int:
        """People a gate of this level needs (a dangerous gate never needs fewer than an ordinary one)."""
        return max(self.dangerous, self.confirm) if dangerous else self.confirm



class Cluster(Strict):
    name: Name = ""  # filled from the mapping key
    kind: str
    _kind = field_validator("kind")(check_kind)
    members: list[Member] = Field(min_length=1, max_length=500)
    credentials: Credentials = Credentials()
    replication: Credentials | None = Field(default=None, description="credentials replicas use to reach a primary")
    timeouts: Timeouts = Timeouts()
    simulated: Simulated | None = None
    drill_target: bool = Field(default=False, description="drills may break this cluster on purpose")
    service: ServiceControl = ServiceControl()
    ceph: CephOptions | None = None
    # Members the operator declares gone for good (no waiting for them to come back).
    gone_for_good: list[Name] = Field(default_factory=list)
    fencing: list[FenceMethod] | None = Field(default=None, min_length=1,
                                              description="fence methods in the order to try them, for each member "
                                                          "a promotion replaces; "
                                                                       "default: sql, service, signal, proxy")
    proxies: list[Proxy] = Field(default_factory=list)
    lock: LockSettings | None = Field(default=None, description="this cluster's lock; default the inventory's `lock:`")
    depends_on: list[Name] = Field(default_factory=list, description="clusters whose recovery must hold before this "
                                                                     "one's starts (a site: drengine/site/)")
    expect_undo_within: UndoWithin = Field(default_factory=dict, description="per kind of ledger entry: how long it may stay open")
    approvals: Approvals | None = Field(default=None, description="this cluster's approval policy; default the "
                                                                  "inventory's `approvals:`")
    # The inventory hosts its members run on, filled in by Inventory: a member's service command
    # is shown (and sent) with the sudo its host's `become` asks for.
    _hosts: dict[str, Host] = PrivateAttr(default_factory=dict)

    def host_of(self, member: Member) -> Host | None:
        """The inventory host that runs `member`, when the cluster came from an inventory."""
        return self._hosts.get(member.host) if member.host is not None else None

    def proxy_host(self, proxy: Proxy) -> Host | None:
        """The inventory host a proxy's runtime API is reached over (its commands run with that host's sudo)."""
        return self._hosts.get(proxy.host) if proxy.host is not None else None

    @model_validator(mode="after")
    def _unique_members(self) -> Cluster:
        seen: set[str] = set()
        for member in self.members:
            if member.name in seen:
                raise ValueError(f"member {member.name!r} is listed twice; each member needs a unique name")
            seen.add(member.name)
        unknown = [g for g in self.gone_for_good if g not in seen]
        if unknown:
            raise ValueError(f"gone_for_good names {unknown}, which are not members of this cluster")
        for proxy in self.proxies:
            for backend in proxy.backends:
                strangers = sorted(set(backend.servers) - seen)
                if strangers:
                    raise ValueError(f"proxy {proxy.name}, backend {backend.name}: servers are given for {strangers}, "
                                     f"which are not members of this cluster (members: {sorted(seen)})")
        if len({p.name for p in self.proxies}) != len(self.proxies):
            raise ValueError("two proxies have the same name; each proxy needs a unique name")
        return self

    def fence_methods(self) -> tuple[FenceMethod, ...]:
        return tuple(self.fencing) if self.fencing is not None else DEFAULT_FENCING

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        from drengine.suggest import did_you_mean

        names = [m.name for m in self.members]
        raise InputError(f"cluster {self.name} has no member named {name!r}.{did_you_mean(name, names)} "
                         f"Members: {', '.join(names)}")

    def port_of(self, member: Member) -> int:
        from drengine.datastores import datastore

        return member.port or datastore(self.kind).default_port


class NotifyEvent(str, Enum):
    GATE_WAITING = "gate_waiting"  # also: a gate waits for a second person's `drengine approve`
    RUN_FINISHED = "run_finished"
    OBJECTIVE_MISSED = "objective_missed"
    CHANGE_OVERDUE = "change_overdue"  # a change-ledger entry left open past its expected undo time
    BREAK_GLASS = "break_glass"  # a gate under the two-person rule passed by one person (`--alone --reason`)


class NotifyTarget(Strict):
    """A webhook told when a gate waits, a run ends or a drill misses an objective
    (`format: webhook`: drengine's JSON body; `format: slack`: a Slack-compatible incoming webhook).
    Incoming-webhook URLs carry their token: give them as `url_secret: {env: VAR}` or `{file: PATH}`."""

    name: Name
    format: Literal["webhook", "slack"] = "webhook"
    url: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    url_secret: SecretRef | None = None
    events: list[NotifyEvent] = Field(default_factory=lambda: list(NotifyEvent), min_length=1)
    timeout: float = Field(default=3.0, gt=0, le=30, description="seconds; a notification never waits longer")

    @model_validator(mode="after")
    def _one_url(self) -> NotifyTarget:
        if (self.url is None) == (self.url_secret is None):
            raise ValueError("a notify entry needs exactly one of `url: http(s)://...` or `url_secret: {env: VAR}`")
        return self

    def resolve_url(self, where: str) -> str:
        if self.url is not None:
            return self.url
        assert self.url_secret is not None
        value = self.url_secret.resolve(f"{where}: notify {self.name}")
        if not value.startswith(("http://", "https://")):
            raise InputError(f"{where}: notify {self.name}: the URL read from {self.url_secret.describe()} "
                             f"does not start with http:// or https://")
        return value


class Inventory(Strict):
    path: str = ""
    hosts: dict[Name, Host] = Field(default_factory=dict)
    clusters: dict[Name, Cluster] = Field(default_factory=dict)
    lock_dir: str | None = None  # older spelling of `lock: {backend: local, dir: ...}`
    lock: LockSettings | None = None
    notify: list[NotifyTarget] = Field(default_factory=list, description="webhooks told about gates and run ends")
    expect_undo_within: UndoWithin = Field(default_factory=dict, description="per kind of ledger entry: how long it may stay open")
    approvals: Approvals | None = Field(default=None, description="approval policy of every cluster (two-person rule)")

    @model_validator(mode="before")
    @classmethod
    def _hosts_from_ansible(cls, data: object, info: ValidationInfo) -> object:
        """`hosts: {ansible: PATH}` (or `{ansible: {path: PATH, defaults: {...}}}`): the hosts of an
        Ansible inventory (see drengine/ansible.py), next to any hosts written here (which win).
        `defaults` holds what Ansible does not say (known_hosts, become_password, timeouts)."""
        if not (isinstance(data, dict) and isinstance(data.get("hosts"), dict) and "ansible" in data["hosts"]):
            return data
        hosts = dict(data["hosts"])
        spec = hosts.pop("ansible")
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or set(spec) - {"path", "defaults"}:
            raise ValueError("`ansible:` takes the path of an Ansible inventory, or {path: PATH, defaults: {...}}")
        source = (info.context or {}).get("source")
        base = Path(source.path).parent if source is not None else Path.cwd()
        path = (base / Path(spec["path"]).expanduser())
        defaults = spec.get("defaults") or {}
        if not isinstance(defaults, dict):
            raise ValueError("`ansible: defaults:` must be a mapping of host settings (ssh:, become_password:, ...)")
        from drengine.ansible import ansible_hosts

        for name, entry in ansible_hosts(path).items():
            if name in hosts:
                continue  # written in the drengine inventory itself: that entry wins whole
            merged = {**defaults, **entry, "ssh": {**(defaults.get("ssh") or {}), **entry.get("ssh", {})}}
            try:
                Host.model_validate(merged)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
                raise InputError(f"{path}: host {name} from the Ansible inventory cannot be used: {problems}") from None
            hosts[name] = merged
        return {**data, "hosts": hosts}

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("clusters"), dict):
            clusters = {}
            for key, value in data["clusters"].items():
                clusters[key] = {**value, "name": key} if isinstance(value, dict) and "name" not in value else value
            data = {**data, "clusters": clusters}
        return data

    @model_validator(mode="after")
    def _hosts_exist(self) -> Inventory:
        for name, host in self.hosts.items():
            chain = [name]
            jump = host.ssh.proxy_jump
            while jump is not None:
                if jump not in self.hosts:
                    from drengine.suggest import did_you_mean

                    raise ValueError(f"host {chain[-1]}: `proxy_jump: {jump}` names no host under `hosts:`."
                                     f"{did_you_mean(jump, self.hosts)} Known hosts: {sorted(self.hosts)}")
                if jump in chain:
                    raise ValueError(f"host {name}: proxy_jump goes round in a circle: {' -> '.join([*chain, jump])}")
                chain.append(jump)
                jump = self.hosts[jump].ssh.proxy_jump
            if host.ssh.proxy_jump is not None:
                host._jump = (host.ssh.proxy_jump, self.hosts[host.ssh.proxy_jump])
        for cluster in self.clusters.values():
            cluster._hosts.update({m.host: self.hosts[m.host] for m in cluster.members
                                   if m.host is not None and m.host in self.hosts})
            for proxy in cluster.proxies:
                if proxy.host is not None and proxy.host not in self.hosts:
                    raise ValueError(f"cluster {cluster.name}: proxy {proxy.name} is reached over host {proxy.host!r}, "
                                     f"which is not under `hosts:`; known hosts: {sorted(self.hosts)}")
                if proxy.host is not None:
                    cluster._hosts[proxy.host] = self.hosts[proxy.host]
            for member in cluster.members:
                if member.host is not None and member.host not in self.hosts:
                    from drengine.suggest import did_you_mean

                    raise ValueError(
                        f"cluster {cluster.name}: member {member.name} runs on host {member.host!r}, "
                        f"which is not under `hosts:`.{did_you_mean(member.host, self.hosts)} "
                        f"Known hosts: {sorted(self.hosts)}"
                    )
        return self

    @model_validator(mode="after")
    def _dependencies_hold(self, info: ValidationInfo) -> Inventory:
        """`depends_on:` names clusters of this inventory and goes round in no circle; each
        problem is reported at the line of its entry."""
        from drengine.site.graph import dependency_problems

        problems = dependency_problems(self.depends())
        if problems:
            source = (info.context or {}).get("source")
            where = source.where if source is not None else (lambda loc: ".".join(str(p) for p in loc))
            raise InputError(f"{source.path if source is not None else 'inventory'}: {len(problems)} problem(s)",
                             [f"{where(loc)}: {text}" for loc, text in problems])
        return self

    def depends(self) -> dict[str, list[str]]:
        """Each cluster and the clusters it depends on, in the inventory's order."""
        return {name: list(c.depends_on) for name, c in self.clusters.items()}

    def members_on(self, host: str) -> list[tuple[Cluster, Member]]:
        """Every member of every cluster that runs on the inventory host `host` (its `host:`)."""
        if host not in self.hosts:
            from drengine.suggest import did_you_mean

            raise InputError(f"{self.path}: no host named {host!r} under `hosts:`.{did_you_mean(host, self.hosts)} "
                             f"Hosts: {', '.join(sorted(self.hosts)) or 'none'}")
        return [(c, m) for c in self.clusters.values() for m in c.members if m.host == host]

    def lock_for(self, cluster: Cluster) -> LocalLockSettings | EtcdLockSettings:
        """The lock a run on this cluster takes: the cluster's own, the inventory's, else the local default."""
        return cluster.lock or self.lock or LocalLockSettings(backend="local", dir=self.lock_dir)

    def approvals_for(self, cluster: Cluster) -> Approvals:
        """The approval policy of a cluster: its own, the inventory's, else one person per gate."""
        return cluster.approvals or self.approvals or Approvals()

    def cluster(self, name: str) -> Cluster:
        if name not in self.clusters:
            from drengine.suggest import did_you_mean

            raise InputError(
                f"{self.path}: no cluster named {name!r}.{did_you_mean(name, self.clusters)} "
                f"The inventory defines: {', '.join(sorted(self.clusters)) or 'none'}"
            )
        return self.clusters[name]


def load_inventory(path: str | Path) -> Inventory:
    """Load and validate an inventory file; InputError lists every problem with FILE:LINE."""
    source = load_yaml(path)
    if source.data is None:
        raise InputError(f"{path}:1: the inventory is empty; expected `clusters:` with at least one cluster")
    inventory = validate(source, Inventory)
    return inventory.model_copy(update={"path": str(path)})
