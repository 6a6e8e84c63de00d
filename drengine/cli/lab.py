"""`drengine lab`: real local services on loopback for drills and tests (`lab up|status|down`),
simulated clusters started over (`lab reset`),
and the hidden commands the lab itself runs: `lab node start|stop|status` (what the lab
inventories' service templates call, so drengine starts and stops lab servers the way it starts
and stops real ones) and `lab serve` (a simulator served over its real protocol)."""

from __future__ import annotations

from pathlib import Path

import click

from drengine.cli.options import cluster_option, complete_scenarios, help_if_bare, inventory_option
from drengine.cli.terminal import out
from drengine.lab import lab_kinds, node_kinds, served_kinds


class _LabUpCommand(click.Command):
    """`lab up --help` lists the scenarios of the simulated labs (imported only when help is shown)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from drengine.lab import lab_scenarios, simulated_labs

        with formatter.section("Scenarios (--scenario, simulated labs only)"):
            formatter.write_dl([(kind, ", ".join(lab_scenarios(kind))) for kind in simulated_labs()])


@click.group("lab", invoke_without_command=True)
@click.pass_context
def lab_group(ctx: click.Context) -> None:
    """Real local services on loopback for drills and tests."""
    help_if_bare(ctx)


@lab_group.command("up", cls=_LabUpCommand)
@click.argument("kind", type=click.Choice(lab_kinds()))
@click.option("--dir", "lab_dir", type=click.Path(), default=None, help="Lab directory (default /tmp/drengine-lab).")
@click.option("--inventory-out", type=click.Path(), default="inventory/lab.yaml", show_default=True,
              help="Inventory file to add the lab cluster to (other clusters in it are kept).")
@click.option("--scenario", default=None, shell_complete=complete_scenarios,
              help="For the simulated labs (mongodb, elasticsearch): which situation the served cluster is in "
                   "(listed below).")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=None,
              help="For the simulated labs: run the simulator's time this many times faster than real time "
                   "(elections, initial syncs, shard recoveries take their realistic time at 1).")
def lab_up(kind: str, lab_dir: str | None, inventory_out: str, scenario: str | None, speed: float | None) -> None:
    """Start a lab cluster and write its inventory.

    mariadb, galera, ceph and ssh start real daemons on loopback; mongodb and elasticsearch
    serve the simulators over the real protocols (no such servers can be installed here);
    etcd starts a three-member etcd for the team lock and points the inventory's `lock:` at it;
    ssh-site (root only) adds a site's hosts: sudo users, a bastion and three hosts reachable
    only through it (`lab down` removes the users again).
    site starts ssh, mariadb, galera and ceph as one site (members on the SSH hosts, MariaDB
    depending on Ceph: `drengine drill site --lose-host host1`).
    The scenario, the lab directory and the lab's ports are checked before anything starts:
    a port another process holds ends with exit 1, naming the port, the process (pid and
    command) and what frees it (`drengine lab down --dir DIR` for another lab's). Exit 2 on bad
    input (kind, scenario, directory)."""
    from drengine.lab import start_lab

    summary = start_lab(kind, lab_dir, inventory_out, scenario, speed)
    out(summary)


@lab_group.command("status")
@click.option("--dir", "lab_dir", type=click.Path(), default=None, help="Lab directory (default /tmp/drengine-lab).")
def lab_status(lab_dir: str | None) -> None:
    """List the lab's processes: kind, name, PID, running or GONE, and log file."""
    from drengine.lab import lab_status_lines

    for line in lab_status_lines(lab_dir):
        out(line)


@lab_group.command("down")
@click.argument("kind", required=False)
@click.option("--dir", "lab_dir", type=click.Path(), default=None, help="Lab directory (default /tmp/drengine-lab).")
def lab_down(kind: str | None, lab_dir: str | None) -> None:
    """Stop what the lab started (by PID): one KIND, or everything."""
    from drengine.lab import stop_lab

    for line in stop_lab(kind, lab_dir):
        out(line)


@lab_group.command("reset")
@inventory_option()
@cluster_option(required=False, text="Only this simulated cluster (default: every simulated cluster of the inventory).")
def lab_reset(inventory: str, cluster: str | None) -> None:
    """Start simulated clusters over from their scenarios: their kept state (what runs did to
    them, which `status` and the next run see) is removed. Real clusters are not touched."""
    from drengine.lab.simreset import reset_simulated

    for line in reset_simulated(inventory, cluster):
        out(line)


LAB_DIR_OPTION = click.option("--dir", "--lab-dir", "lab_dir", type=click.Path(), default=None,
                              help="Lab directory (default $DRENGINE_LAB_DIR or /tmp/drengine-lab).")


@lab_group.group("node", hidden=True)
def lab_node() -> None:
    """One lab node: what the lab inventories' service templates run, so that drengine starts and
    stops lab servers the way it starts and stops real ones."""


@lab_node.command("start")
@click.argument("kind", type=click.Choice(node_kinds()))
@click.argument("name")
@LAB_DIR_OPTION
@click.option("--bootstrap", is_flag=True, help="Galera: start a new Primary component (--wsrep-new-cluster).")
@click.option("--start-position", metavar="UUID:SEQNO", help="Galera: position from --wsrep-recover (rejoin by IST).")
@click.option("--no-recover", is_flag=True, help="Galera: do not run --wsrep-recover first when grastate.dat has seqno -1.")
@click.option("--timeout", type=float, help="Galera: seconds to wait until the node is Synced.")
def lab_node_start(kind: str, name: str, lab_dir: str | None, bootstrap: bool, start_position: str | None,
                   no_recover: bool, timeout: float | None) -> None:
    """Start one lab node detached (recorded in the lab, so `lab down` stops it)."""
    from drengine.lab import node_start
    from drengine.lab.procs import NodeStart

    out(node_start(kind, lab_dir, name, NodeStart(bootstrap, start_position, not no_recover, timeout)))


@lab_node.command("stop")
@click.argument("kind", type=click.Choice(node_kinds()))
@click.argument("name")
@LAB_DIR_OPTION
def lab_node_stop(kind: str, name: str, lab_dir: str | None) -> None:
    """Stop one lab node by its PID."""
    from drengine.lab import node_stop

    out(node_stop(kind, lab_dir, name))


@lab_node.command("status")
@click.argument("kind", type=click.Choice(node_kinds()))
@click.argument("name")
@LAB_DIR_OPTION
def lab_node_status(kind: str, name: str, lab_dir: str | None) -> None:
    """Exit 0 when the node runs, 3 (the LSB init scripts' "not running") when it does not."""
    from drengine.lab import node_status

    running, text = node_status(kind, lab_dir, name)
    out(text)
    if not running:
        raise SystemExit(3)


@lab_group.command("serve", hidden=True)
@click.argument("kind", type=click.Choice(served_kinds()))
@click.option("--scenario", help="The situation the served cluster starts in (when --state does not exist yet).")
@click.option("--port", type=int, help="The (first) port to listen on, on 127.0.0.1.")
@click.option("--state", type=click.Path(), help="State file: loaded when it exists, written back when serving stops.")
@click.option("--speed", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="How much faster than real time the simulator's own time runs (heartbeats, recoveries).")
def lab_serve(kind: str, scenario: str | None, port: int | None, state: str | None, speed: float) -> None:
    """Serve a simulator over its real protocol until SIGTERM (`lab down`) or Ctrl-C."""
    from drengine.lab import serve_simulator
    from drengine.lab.simulated import serve_until_stopped

    served = serve_simulator(kind, scenario, port, Path(state) if state else None, speed)
    for line in served.endpoints:
        out(line)
    serve_until_stopped(served.stop)
