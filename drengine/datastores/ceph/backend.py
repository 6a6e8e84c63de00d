"""The Ceph backend a runbook step receives as `ctx.backend`.

It wraps one `CephAPI` (the librados `CephConnector` for a real cluster, the simulator for a
simulated one, see `drengine.datastores.ceph.sim`) and adds what every Ceph step needs on top:
one `observe()` for a snapshot, a description for messages, `monitors`, the
`MonitorControl` for monitor surgery on the monitors' hosts (admin socket, service
templates, ceph-mon and monmaptool), which librados cannot do, and the drills' fault
injection (`kill`, `hang`, `resume`, `start` of a member: `drengine.faults.FaultTarget`). The connector's time
bounds come from the inventory: `timeouts.connect` bounds reaching a monitor quorum,
`timeouts.read` each monitor command and object operation. Time (snapshots' timestamps, the
waits for a monitor to stop or start) comes from the run's `Clock`.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from drengine.clock import SYSTEM, Clock, wait_until
from drengine.datastores.ceph.connector import CephAPI, CephConnector, CephSnapshot, JsonDoc, observe
from drengine.errors import ConnectError, StepFailed
from drengine.faults import FaultsByProcess, MemberFaults
from drengine.inventory import CephOptions, Cluster, Inventory, Member
from drengine.transport import HostTransport, MemberTransports, ServiceAction, ShellCommand, command_text, render_service


class CephBackend(FaultsByProcess):
    """What the Ceph actions talk to: the cluster's `CephAPI` plus snapshots."""

    def __init__(self, cluster: Cluster, inventory: Inventory | None = None, api: CephAPI | None = None,
                 clock: Clock = SYSTEM) -> None:
        self.cluster = cluster
        self.clock = clock
        if api is None:
            options = cluster.ceph or CephOptions()
            api = CephConnector(
                options.conf_file,
                options.client_name,
                connect_timeout=cluster.timeouts.connect,
                op_timeout=cluster.timeouts.read,
                keyring=options.keyring,
                clock=clock,
            )
        self.api: CephAPI = api
        self.monitors: MonitorControl = HostMonitorControl(cluster, inventory, clock=clock)
        self._faults = MemberFaults(inventory, cluster)

    def reconnect(self) -> None:
        """Drop the connection; the next call connects afresh (after monitor surgery, say)."""
        self.api.close()

    def describe(self) -> str:
        options = self.cluster.ceph or CephOptions()
        return f"Ceph cluster {self.cluster.name} ({options.conf_file})"

    def observe(self) -> CephSnapshot:
        # Through this backend's own calls, so that a twin that must record what it answers (time passing) can.
        return observe(self, self.clock.wall)

    def mon_command(self, cmd: Mapping[str, Any]) -> JsonDoc:
        return self.api.mon_command(cmd)

    def mon_listens(self, member: Member) -> PortCheck:
        """Does this monitor's port accept connections? A monitor out of quorum still listens; a
        refused port is a dead monitor (what `drengine status` reads when no quorum answers)."""
        port = self.cluster.port_of(member)
        timeout = self.cluster.timeouts.connect
        try:
            with socket.create_connection((member.address, port), timeout=timeout):
                pass
        except TimeoutError:
            return PortCheck(state="silent", error=f"no TCP answer on {member.address}:{port} within {timeout:g} s")
        except OSError as exc:
            return PortCheck(state="refused" if isinstance(exc, ConnectionRefusedError) else "silent",
                             error=f"{member.address}:{port}: {exc.strerror or exc}")
        return PortCheck(state="accepts")

    def pg_command(self, pgid: str, cmd: Mapping[str, Any]) -> JsonDoc:
        return self.api.pg_command(pgid, cmd)

    def write_object(self, pool: str, name: str, data: bytes, timeout: float) -> None:
        self.api.write_object(pool, name, data, timeout)

    def read_object(self, pool: str, name: str) -> bytes:
        return self.api.read_object(pool, name)

    def close(self) -> None:
        try:
            self.api.close()
        finally:
            closer = getattr(self.monitors, "close", None)
            if closer is not None:
                closer()


class PortCheck(BaseModel):
    """Whether a monitor's port accepts a TCP connection: `refused` (nothing listens: dead),
    `silent` (no answer in time, or the address unreachable), or `accepts`."""

    model_config = ConfigDict(frozen=True)

    state: Literal["accepts", "refused", "silent"]
    error: str = ""


# --------------------------------------------------------------------------- monitor hosts


class MonProbe(BaseModel):
    """What one monitor's admin socket says (it answers without a quorum), or why it did not."""

    model_config = ConfigDict(frozen=True)

    name: str  # the monitor id: a, b, c
    running: bool
    state: str = ""  # leader, peon, probing, electing, ...
    monmap_epoch: int = 0
    monmap: list[str] = Field(default_factory=list)
    error: str = ""


class MonitorControl(Protocol):
    """What librados cannot do for monitor surgery: look at a monitor through its admin socket,
    stop and start it, and edit its monmap, on the monitor's own host. Every method takes the
    member name (`mon.a`); `*_command` methods give the exact shell line shown in plans."""

    def monitors(self) -> list[str]: ...

    def probe(self, member: str) -> MonProbe: ...

    def stop_command(self, member: str) -> str: ...

    def extract_commands(self, member: str, remove: list[str]) -> list[str]: ...

    def start_command(self, member: str) -> str: ...

    def stop(self, member: str) -> None: ...

    def edit_monmap(self, member: str, remove: list[str]) -> list[str]:
        """Extract the monmap (keeping the first copy as a backup), remove `remove`, inject it; returns the new members."""
        ...

    def start(self, member: str) -> None: ...


def mon_id(member: str) -> str:
    return member.removeprefix("mon.")


def monmap_files(member: Member) -> tuple[str, str]:
    """(working copy, backup) beside the monitor's store; the backup is written once and never overwritten."""
    base = member.data_dir.rstrip("/") if member.data_dir else f"/tmp/drengine-{member.name}"
    return f"{base}.monmap.drengine", f"{base}.monmap.before-drengine"


def parse_monmaptool_print(text: str) -> list[str]:
    """`monmaptool --print FILE`: lines `0: [v2:127.0.0.1:3300/0] mon.a` -> ["a"]."""
    names = []
    for line in text.splitlines():
        line = line.strip()
        head, _, rest = line.partition(": ")
        if head.isdigit() and " mon." in f" {rest}":
            names.append(rest.rsplit("mon.", 1)[1].strip())
    return names


def parse_mon_status(name: str, text: str) -> MonProbe:
    """`ceph daemon mon.X mon_status` JSON: state and the monitor's own monmap."""
    try:
        doc = json.loads(text)
    except ValueError:
        return MonProbe(name=name, running=False, error=f"unreadable mon_status answer: {text[:200]!r}")
    monmap = doc.get("monmap", {}) if isinstance(doc, dict) else {}
    return MonProbe(
        name=name,
        running=True,
        state=str(doc.get("state", "")) if isinstance(doc, dict) else "",
        monmap_epoch=int(monmap.get("epoch", 0)),
        monmap=[str(m["name"]) for m in monmap.get("mons", []) if "name" in m],
    )


class HostMonitorControl:
    """Monitor surgery on the monitors' hosts, each reached by the inventory's rule
    (`transport.member_transport`). Stop and start use the inventory's service templates, so
    what is run is what the operator configured."""

    def __init__(self, cluster: Cluster, inventory: Inventory | None, wait: float = 15.0, clock: Clock = SYSTEM) -> None:
        self.cluster = cluster
        self.inventory = inventory
        self.wait = wait
        self.clock = clock
        self._hosts = MemberTransports(inventory, cluster.name)
        options = cluster.ceph or CephOptions()
        self.conf_file = options.conf_file

    def monitors(self) -> list[str]:
        return [m.name for m in self.cluster.members if m.role == "mon" or m.name.startswith("mon.")]

    def _transport(self, member: Member) -> HostTransport:
        return self._hosts.of(member, f"reach the host of {member.name} for monitor surgery")

    def _template(self, which: ServiceAction, member: Member) -> ShellCommand:
        return render_service(self.cluster, member, which, example=f"systemctl {which} ceph-mon@{{name}}")

    def probe(self, member: str) -> MonProbe:
        m = self.cluster.member(member)
        argv = ["ceph", "-c", self.conf_file, "daemon", m.name, "mon_status"]
        try:
            result = self._transport(m).run(argv, timeout=10.0)
        except ConnectError as exc:
            return MonProbe(name=mon_id(member), running=False, error=str(exc))
        if not result.ok:
            return MonProbe(name=mon_id(member), running=False,
                            error=(result.stderr.strip() or result.stdout.strip())[-300:] or f"exit {result.exit_status}")
        return parse_mon_status(mon_id(member), result.stdout)

    def stop_command(self, member: str) -> str:
        return self._template("stop", self.cluster.member(member)).text

    def start_command(self, member: str) -> str:
        return self._template("start", self.cluster.member(member)).text

    def _edit_argvs(self, member: str, remove: list[str]) -> list[list[str]]:
        m = self.cluster.member(member)
        work, backup = monmap_files(m)
        rm: list[str] = []
        for r in remove:
            rm += ["--rm", mon_id(r)]
        return [
            ["ceph-mon", "-i", mon_id(member), "-c", self.conf_file, "--extract-monmap", work],
            ["cp", "-n", work, backup],
            ["monmaptool", work, *rm],
            ["ceph-mon", "-i", mon_id(member), "-c", self.conf_file, "--inject-monmap", work],
        ]

    def extract_commands(self, member: str, remove: list[str]) -> list[str]:
        return [command_text(a) for a in self._edit_argvs(member, remove)]

    def stop(self, member: str) -> None:
        m = self.cluster.member(member)
        if not self.probe(member).running:
            return
        self._transport(m).run(self._template("stop", m), timeout=30.0).check()
        if not wait_until(lambda: not self.probe(member).running, self.wait, interval=0.3, clock=self.clock):
            raise StepFailed(f"{member} still answers on its admin socket {self.wait:g} s after the stop command; "
                             f"its store stays locked, so its monmap cannot be edited. Stop it by hand and resume")

    def edit_monmap(self, member: str, remove: list[str]) -> list[str]:
        m = self.cluster.member(member)
        transport = self._transport(m)
        for argv in self._edit_argvs(member, remove):
            transport.run(argv, timeout=60.0).check()
        work, _ = monmap_files(m)
        shown = transport.run(["monmaptool", "--print", work], timeout=30.0).check()
        return parse_monmaptool_print(shown.stdout)

    def start(self, member: str) -> None:
        m = self.cluster.member(member)
        if self.probe(member).running:
            return
        self._transport(m).run(self._template("start", m), timeout=30.0).check()
        if not wait_until(lambda: self.probe(member).running, self.wait, interval=0.3, clock=self.clock):
            raise StepFailed(f"{member} does not answer on its admin socket {self.wait:g} s after the start command; "
                             f"check its log, start it by hand and resume")

    def close(self) -> None:
        self._hosts.close()
