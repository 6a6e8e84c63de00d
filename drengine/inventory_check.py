"""`drengine inventory check`: is the inventory ready for the night it is needed?

Without connecting: every secret it names can be read (an environment variable that is set,
a file that exists and is readable); field names are checked by the loader, with "did you
mean". With `connect=True`: every host answers over SSH (through its bastions) and, where it
has `become: true`, sudo runs without a prompt (or with its become_password); every member of
every cluster answers its client with the inventory's credentials, and the MariaDB and Galera
accounts hold the privileges the runbooks need (`drengine.inventory_grants`). Values of secrets
are never read into a result, and never printed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from drengine.errors import CommandFailed, ConnectError, DrengineError
from drengine.inventory import Cluster, Inventory, Member, SecretRef, Transport
from drengine.inventory_grants import grant_statements, missing

if TYPE_CHECKING:
    from drengine.datastores.mysql_pool import MySQLPool


class Outcome(str, Enum):
    OK = "ok"
    FAILED = "FAILED"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckResult:
    """One row of the check's table: what was checked, of what, and the outcome in words."""

    subject: str  # `host inner`, `cluster db, member db1`, `hosts.ops1.become_password`
    check: str  # secret, ssh, sudo, member, grants
    outcome: Outcome
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome is Outcome.FAILED


def secret_refs(model: BaseModel, path: str = "") -> Iterator[tuple[str, SecretRef]]:
    """Every secret reference in the inventory, with where it is (`clusters.db.credentials.password`)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{path}.{name}" if path else name
        yield from _refs_in(value, where)


def _refs_in(value: object, where: str) -> Iterator[tuple[str, SecretRef]]:
    if isinstance(value, SecretRef):
        yield where, value
    elif isinstance(value, BaseModel):
        yield from secret_refs(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _refs_in(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _refs_in(item, f"{where}.{getattr(item, 'name', i)}")


def check_secret(where: str, ref: SecretRef) -> CheckResult:
    """Can the secret be read? Says which variable or file, never the value."""
    if ref.env is not None:
        if ref.env not in os.environ:
            return CheckResult(where, "secret", Outcome.FAILED,
                               f"environment variable {ref.env} is not set; export it before running drengine")
        if not os.environ[ref.env]:
            return CheckResult(where, "secret", Outcome.FAILED, f"environment variable {ref.env} is empty")
        return CheckResult(where, "secret", Outcome.OK, f"environment variable {ref.env} is set")
    assert ref.file is not None
    path = Path(ref.file).expanduser()
    if not path.exists():
        return CheckResult(where, "secret", Outcome.FAILED, f"file {ref.file} does not exist")
    if not path.is_file() or not os.access(path, os.R_OK):
        return CheckResult(where, "secret", Outcome.FAILED, f"file {ref.file} is not a readable file")
    if path.stat().st_mode & 0o077:
        return CheckResult(where, "secret", Outcome.OK,
                           f"file {ref.file} is readable (warning: others may read it too; chmod 600)")
    return CheckResult(where, "secret", Outcome.OK, f"file {ref.file} is readable")


def check_secrets(inventory: Inventory) -> list[CheckResult]:
    return [check_secret(where, ref) for where, ref in secret_refs(inventory)]


def check_host(name: str, inventory: Inventory) -> list[CheckResult]:
    """SSH (through the host's bastions) and sudo: `true` run as every host command would be."""
    from drengine.transport import transport_for

    host = inventory.hosts[name]
    subject = f"host {name}"
    transport = transport_for(host, name)
    how = "this machine" if host.transport == Transport.LOCAL else getattr(transport, "target", host.address)
    sudo_row = "sudo -n" if host.become_password is None else "sudo with become_password"
    try:
        result = transport.run(["true"], timeout=host.ssh.connect_timeout + 10)
    except CommandFailed as exc:  # connected; sudo said no
        return [CheckResult(subject, "ssh", Outcome.OK, how),
                CheckResult(subject, "sudo", Outcome.FAILED, str(exc))]
    except ConnectError as exc:
        rows = [CheckResult(subject, "ssh", Outcome.FAILED, str(exc))]
        if host.become:
            rows.append(CheckResult(subject, "sudo", Outcome.SKIPPED, "the host could not be reached"))
        return rows
    except DrengineError as exc:
        return [CheckResult(subject, "ssh" if not host.become else "sudo", Outcome.FAILED, str(exc))]
    finally:
        transport.close()
    rows = [CheckResult(subject, "ssh" if host.transport == Transport.SSH else "local", Outcome.OK, how)]
    if host.become:
        ok = result.ok
        rows.append(CheckResult(subject, "sudo", Outcome.OK if ok else Outcome.FAILED,
                                f"`{result.command}` " + ("ran as root" if ok else f"exited {result.exit_status}: "
                                                          f"{result.stderr.strip()[-200:]}") + f" ({sudo_row})"))
    elif not result.ok:
        rows[0] = CheckResult(subject, "ssh", Outcome.FAILED, f"`true` exited {result.exit_status}")
    return rows


def check_members(inventory: Inventory) -> tuple[list[CheckResult], set[tuple[str, str]]]:
    """Every member answers its client with the inventory's credentials (the probe `status` uses).
    Returns the rows and the (cluster, member) pairs that answered."""
    from drengine.status import MemberState, probe_fleet

    fleet = probe_fleet(inventory)
    rows: list[CheckResult] = []
    answered: set[tuple[str, str]] = set()
    for status in fleet.clusters:
        if status.bad_input or not status.members:
            why = status.bad_input or status.headline
            rows.append(CheckResult(f"cluster {status.cluster}", "member", Outcome.FAILED, why))
            continue
        for member in status.members:
            ok = member.state is MemberState.REACHABLE
            if ok:
                answered.add((status.cluster, member.name))
            detail = "answers" + (f" ({member.role})" if member.role else "") if ok else \
                f"{member.state.value}: {member.error or 'no answer'}"
            rows.append(CheckResult(f"cluster {status.cluster}, member {member.name}", "member",
                                    Outcome.OK if ok else Outcome.FAILED, detail))
    fleet.wait_closed(5.0)
    return rows, answered


def check_grants(inventory: Inventory, answered: set[tuple[str, str]]) -> list[CheckResult]:
    """On every MariaDB and Galera member that answered: does the inventory's account hold what the
    runbooks send? Read from the server's SHOW GRANTS; a lack is named with the GRANT that fixes it."""
    from drengine.datastores.mysql_pool import MySQLPool

    rows: list[CheckResult] = []
    for cluster in inventory.clusters.values():
        # A simulated cluster has no accounts: nothing to grant.
        if cluster.kind not in ("mariadb", "galera") or cluster.simulated is not None:
            continue
        creds = cluster.credentials
        try:
            password = creds.password.resolve(f"cluster {cluster.name}") if creds.password else ""
        except DrengineError:
            continue  # reported by the secret rows
        pool = MySQLPool(cluster, creds.user, password)
        try:
            for member in cluster.members:
                if (cluster.name, member.name) in answered:
                    rows.append(_member_grants(pool, cluster, member))
        finally:
            pool.close()
    return rows


def _member_grants(pool: MySQLPool, cluster: Cluster, member: Member) -> CheckResult:
    from drengine.datastores.mysql_pool import Sql

    subject = f"cluster {cluster.name}, member {member.name}"
    try:
        version, account = (str(v) for v in pool.run(member, [Sql("SELECT VERSION(), CURRENT_USER()")]).rows[0])
        grants = [str(row[0]) for row in pool.run(member, [Sql("SHOW GRANTS")]).rows]
    except DrengineError as exc:
        return CheckResult(subject, "grants", Outcome.FAILED,
                           f"could not read the grants of {cluster.credentials.user}: {exc}")
    lacking = missing(cluster.kind, version, grants)
    if not lacking:
        return CheckResult(subject, "grants", Outcome.OK, f"{account} holds what the {cluster.kind} runbooks "
                                                          f"send (MariaDB {version.split('-')[0]})")
    name, _, host = account.rpartition("@")
    fix = "; ".join(grant_statements(lacking, f"'{name}'@'{host}'"))
    return CheckResult(subject, "grants", Outcome.FAILED,
                       f"{account} lacks {'; '.join(str(lack) for lack in lacking)}. To grant: {fix}")


def check_inventory(inventory: Inventory, connect: bool = False) -> list[CheckResult]:
    rows = check_secrets(inventory)
    if connect:
        for name in inventory.hosts:
            rows += check_host(name, inventory)
        members, answered = check_members(inventory)
        rows += members + check_grants(inventory, answered)
    return rows
