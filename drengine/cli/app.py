"""The command line's root: the `drengine` click group (global --debug, --runbooks, --version),
the commands of every family registered on it, `drengine completion`, and the ONE error boundary.

Every error is caught once here, in `run_cli`, and turned into one clear message and a documented
exit code (0 done, 1 failed or cannot recover, 2 invalid input, 3 stopped at a gate or by the
operator, 4 cluster lock held, unavailable or lost). `--debug` shows the traceback. The commands
(drengine/cli/*.py) raise; none of them catches an error to print it.
"""

from __future__ import annotations

import sys
import traceback

import click

from drengine.cli.approve import approve
from drengine.cli.catalog import inventory_group, runbook_group
from drengine.cli.changes import changes_group
from drengine.cli.drills import drill_group
from drengine.cli.explore import explore
from drengine.cli.fleet import status
from drengine.cli.lab import lab_group
from drengine.cli.options import help_if_bare, runbooks_option
from drengine.cli.records import journal_group, report
from drengine.cli.recovery import plan, run
from drengine.cli.runs import runs_group
from drengine.cli.site import drill_site, site_group
from drengine.cli.terminal import SCREEN, err
from drengine.errors import DrengineError, ExitCode, StepInterrupted

DEBUG = {"on": False}


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@runbooks_option
@click.version_option(package_name="drengine")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """drengine: disaster-recovery runbooks for MariaDB, Galera, MongoDB, Ceph and Elasticsearch.

    Start with `drengine status -i INVENTORY`: it asks every cluster what is wrong and names
    the runbook that applies, with the exact `drengine plan` command.

    Exit codes: 0 done, 1 runbook failed or cannot recover (for `status`: a cluster needs
    action), 2 invalid input or usage, 3 stopped at a gate or by the operator, 4 cluster lock
    held by another run, unavailable (etcd down: see --lock local) or lost during the run.
    Colour only at a terminal; NO_COLOR turns it off. Shell completion: `drengine completion --help`.
    """
    DEBUG["on"] = debug
    help_if_bare(ctx)


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script: runbook names, clusters of the inventory given with -i,
    members, faults, scenarios and runs complete with Tab.

    \b
    bash: eval "$(drengine completion bash)"   (in ~/.bashrc)
    zsh:  eval "$(drengine completion zsh)"    (in ~/.zshrc)
    fish: drengine completion fish > ~/.config/fish/completions/drengine.fish"""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    click.echo(cls(main, {}, "drengine", "_DRENGINE_COMPLETE").source())


# Every command family, each in its own module (the help lists them by name; this is the order of main.commands).
for _command in (run, plan, approve, drill_group, explore, inventory_group, runbook_group, journal_group, report,
                 lab_group, status, site_group, runs_group, changes_group, completion):
    main.add_command(_command)


drill_group.add_command(drill_site)


def _where_the_run_is(exc: DrengineError) -> None:
    """Every stop of a run says where its journal is and how to go on."""
    if exc.run_dir is None:
        return
    for line in exc.open_changes:
        err(line)
    err(f"run directory: {exc.run_dir}")
    if exc.resumable:
        err(f"resume: {exc.resume_with} {exc.run_dir}   (add --yes / --accept-data-loss as the gates need)")
    err(f"journal: drengine journal show {exc.run_dir}")


def run_cli(argv: list[str] | None = None) -> int:
    """The one error boundary."""
    SCREEN.evidence.clear()
    try:
        main.main(args=argv, prog_name="drengine", standalone_mode=False)
        return ExitCode.DONE
    except SystemExit as exc:
        return int(exc.code or 0)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.UsageError as exc:
        err(f"usage error: {exc.format_message()}")
        if exc.ctx is not None:
            err(f"see `{exc.ctx.command_path} --help`")
        return ExitCode.INVALID_INPUT
    except click.Abort:
        err("stopped by the operator")
        return ExitCode.STOPPED
    except click.ClickException as exc:
        err(f"error: {exc.format_message()}")
        return ExitCode.INVALID_INPUT
    except DrengineError as exc:
        SCREEN.stop_timer()
        if DEBUG["on"]:
            traceback.print_exc()
        err(f"{'INTERRUPTED' if isinstance(exc, StepInterrupted) else 'error'}: {exc}")
        for problem in getattr(exc, "problems", []):
            err(f"  {problem}")
        _where_the_run_is(exc)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        SCREEN.stop_timer()
        err("interrupted: every event so far is in the journal; continue with `drengine run --resume RUN_DIR`")
        return ExitCode.STOPPED
    except Exception as exc:  # noqa: BLE001 - the error boundary: never a bare traceback
        if DEBUG["on"]:
            traceback.print_exc()
        err(f"internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback; please report it)")
        return ExitCode.FAILED


def entry() -> None:
    """The `drengine` script (pyproject's entry point), `python -m drengine` and `python -m drengine.cli`."""
    sys.exit(run_cli())
