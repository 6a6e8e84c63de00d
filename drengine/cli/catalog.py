"""`drengine runbook list|show` (what drengine can do, and where each runbook came from) and
`drengine inventory check` (where the clusters are, validated)."""

from __future__ import annotations

import click

from drengine.cli.options import complete_runbooks, help_if_bare, inventory_option, runbooks, runbooks_option
from drengine.cli.terminal import emit_json, out
from drengine.errors import ExitCode, InputError


@click.group("inventory", invoke_without_command=True)
@click.pass_context
def inventory_group(ctx: click.Context) -> None:
    """Inventories: where the clusters are."""
    help_if_bare(ctx)


@inventory_group.command("check")
@inventory_option()
@click.option("--connect", is_flag=True, help="Also connect: every host over SSH (through its bastions) and its "
                                             "sudo, every member with the inventory's credentials, and (MariaDB, "
                                             "Galera) the account's grants against what the runbooks send.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: every check and its outcome.")
def inventory_check(inventory: str, connect: bool, as_json: bool) -> None:
    """Validate an inventory; each problem as FILE:LINE, misspelt fields with "did you mean" (exit 2).
    Then check that every secret it names can be read (set environment variables, readable files)
    and, with --connect, that every host and member answers; exit 1 naming each failure."""
    from drengine.inventory import load_inventory
    from drengine.inventory_check import check_inventory
    from drengine.ledger import check_expectations

    inv = load_inventory(inventory)
    check_expectations(inv)  # `expect_undo_within` names kinds of ledger entries the datastores declare (exit 2)
    rows = check_inventory(inv, connect=connect)
    failed = [r for r in rows if r.failed]
    if as_json:
        emit_json({"inventory": inventory, "ok": not failed,
                   "checks": [{"subject": r.subject, "check": r.check, "outcome": r.outcome.value, "detail": r.detail}
                              for r in rows]})
    else:
        for name, cl in inv.clusters.items():
            sim = f", simulated ({cl.simulated.scenario})" if cl.simulated else ""
            out(f"{name}: {cl.kind}, {len(cl.members)} member(s){sim}")
        if rows:
            width = max(len(r.subject) for r in rows)
            out()
            for r in rows:
                out(f"  {r.subject:<{width}}  {r.check:<6}  {r.outcome.value:<7}  {r.detail}",
                    style="red" if r.failed else None)
        if failed:
            out()
            out(f"{inventory}: {len(failed)} check(s) failed:", style="red")
            for r in failed:
                out(f"  {r.subject} ({r.check}): {r.detail}")
        else:
            checked = ("structure, secrets, hosts, sudo, members and their grants" if connect else
                       "structure and secrets; add --connect to reach hosts, sudo and members")
            out(f"{inventory}: OK: {checked}")
    if failed:
        raise SystemExit(ExitCode.FAILED)


EXAMPLE_KINDS = ("mariadb", "galera", "mongodb", "ceph", "elasticsearch")


def example_inventory(kind: str) -> str:
    """The commented example shipped inside the package: the hosts part, then one cluster of `kind`."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent.parent / "examples"
    return (folder / "hosts.yaml").read_text(encoding="utf-8") + (folder / f"{kind}.yaml").read_text(encoding="utf-8")


@inventory_group.command("init")
@click.argument("path", default="inventory.yaml", type=click.Path(dir_okay=False))
@click.option("--example", "kind", type=click.Choice(EXAMPLE_KINDS), default="mariadb", show_default=True,
              help="The datastore of the example cluster.")
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
def inventory_init(path: str, kind: str, force: bool) -> None:
    """Write a commented example inventory to PATH (`-`: print it): hosts over SSH with sudo and a
    bastion, and one cluster; then edit it and run `drengine inventory check -i PATH`."""
    from pathlib import Path

    text = example_inventory(kind)
    if path == "-":
        click.echo(text, nl=False)
        return
    target = Path(path)
    if target.exists() and not force:
        raise InputError(f"{path} exists; drengine does not overwrite an inventory (give another path, or --force)")
    try:
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    out(f"wrote {path}: an example {kind} cluster behind a bastion, reached as a sudo user. Edit it, then:")
    out(f"  drengine inventory check -i {path}             # spelling, structure, secrets")
    out(f"  drengine inventory check -i {path} --connect   # SSH, sudo and every member")


@inventory_group.command("discover")
@click.argument("kind", type=click.Choice(["mariadb", "galera", "mongodb", "elasticsearch", "ceph"]))
@click.argument("address")
@click.option("--name", "cluster_name", default="discovered", show_default=True, help="The cluster's name in the inventory.")
@click.option("--user", default=None, help="The account to ask with (default root; Ceph: client.admin).")
@click.option("--password-env", metavar="VAR", help="Read its password from this environment variable.")
@click.option("--password-file", metavar="FILE", help="Read its password from this file.")
@click.option("--ceph-conf", metavar="FILE", help="Ceph: a ceph.conf to read (keyring, auth); the section names it.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Write the section to FILE (refused if it exists).")
def inventory_discover(kind: str, address: str, cluster_name: str, user: str | None, password_env: str | None,
                       password_file: str | None, ceph_conf: str | None, out_path: str | None) -> None:
    """Ask a running cluster at ADDRESS[:PORT] for its members and print its inventory section
    (YAML; what it cannot say is marked FILL IN). Read-only: status queries only."""
    from pathlib import Path

    from drengine.discover import cluster_yaml, discover
    from drengine.inventory import SecretRef

    if password_env and password_file:
        raise InputError("give --password-env or --password-file, not both")
    try:
        ref = SecretRef(env=password_env) if password_env else SecretRef(file=password_file) if password_file else None
    except ValueError:
        raise InputError(f"--password-env {password_env!r}: expected an environment variable name") from None
    if out_path is not None and Path(out_path).exists():
        raise InputError(f"{out_path} exists; drengine does not overwrite it (paste the section yourself)")
    user = user or ("client.admin" if kind == "ceph" else "root")
    text = cluster_yaml(discover(kind, address, user, ref, ceph_conf), cluster_name, user, ref, ceph_conf)
    if out_path is None:
        click.echo(text, nl=False)
        return
    Path(out_path).write_text(text, encoding="utf-8")
    out(f"wrote {out_path}: cluster {cluster_name}; fill in what is marked FILL IN, then `drengine inventory check`")


@click.group("runbook", invoke_without_command=True)
@click.pass_context
def runbook_group(ctx: click.Context) -> None:
    """Runbooks: what drengine can do."""
    help_if_bare(ctx)


@runbook_group.command("list")
@runbooks_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document: every runbook, its datastore, summary and folder.")
def runbook_list(as_json: bool) -> None:
    """The runbooks found (--runbooks folders, then $DRENGINE_RUNBOOKS, then the built-ins), each
    with the folder it came from; a name found twice is taken from the first folder (exit 2 if one
    is invalid)."""
    from drengine.runbook import list_runbooks

    found_all = list_runbooks(runbooks())
    bad = sum(1 for _, rb in found_all if isinstance(rb, InputError))
    if as_json:
        emit_json([{"name": found.name, "folder": found.folder.describe(), "path": str(found.path),
                    "shadows": [str(s.path) for s in found.shadows]}
                   | ({"valid": False, "error": str(rb), "problems": rb.problems} if isinstance(rb, InputError)
                      else {"valid": True, "kind": rb.spec.kind, "summary": rb.spec.summary})
                   for found, rb in found_all])
    else:
        for found, rb in found_all:
            if isinstance(rb, InputError):
                out(f"{found.name}: INVALID: {rb}")
                for p in rb.problems:
                    out(f"    {p}")
            else:
                out(f"{found.name:32} {rb.spec.kind:14} {rb.spec.summary}")
            out(f"{'':32} from {found.folder.describe()}", style="dim")
            for hidden in found.shadows:
                out(f"{'':32} shadows the copy in {hidden.folder.describe()}")
    if bad:
        raise SystemExit(ExitCode.INVALID_INPUT)


@runbook_group.command("show")
@click.argument("name", shell_complete=complete_runbooks)
@runbooks_option
@click.option("--format", "fmt", type=click.Choice(["text", "mermaid"]), default="text",
              help="text: steps, gates and transitions; mermaid: the state machine as a diagram.")
def runbook_show(name: str, fmt: str) -> None:
    """Show a runbook: its steps, what each does, its gate and where each outcome leads."""
    from drengine.runbook import describe

    rb = runbooks().load(name)
    if fmt == "mermaid":
        out(rb.mermaid().rstrip())
        return
    out(f"{rb.name} ({rb.spec.kind}): {rb.spec.summary}")
    out(f"file: {rb.path}")
    if rb.spec.description:
        out(rb.spec.description.rstrip())
    for name, spec in rb.spec.inputs.items():
        need = "required" if spec.required else (f"default {spec.default}" if spec.default is not None else "optional")
        out(f"input {name} ({need}): {spec.description}")
    out(f"start: {rb.spec.start}")
    for row in describe(rb):
        out(f"  {row['id']}: {row['title']}  [{row['action']}, {row['effect']}, gate: {row['gate']}]")
        for outcome, dest in row["transitions"].items():
            out(f"      {outcome} -> {dest}")
    out("ends: " + ", ".join(f"{k} ({'success' if v.success else 'failure'})" for k, v in rb.spec.ends.items()))
