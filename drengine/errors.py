"""The error hierarchy. Each error maps to one documented exit code at the CLI boundary."""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    DONE = 0
    FAILED = 1  # runbook failed or the cluster cannot be recovered this way
    INVALID_INPUT = 2  # bad inventory, runbook, flags
    STOPPED = 3  # stopped at a gate or by the operator
    LOCKED = 4  # the cluster lock is held by another run, cannot be taken (etcd down) or was lost


class DrengineError(Exception):
    """Base of every error the CLI turns into a message and an exit code. An error that ends
    a run carries the run's directory, so the CLI can say where the journal is and how to resume."""

    exit_code: ExitCode = ExitCode.FAILED
    run_dir: Path | None = None
    resumable: bool = False
    resume_with: str = "drengine run --resume"  # the command that continues it (a site run: `drengine site run --resume`)
    open_changes: tuple[str, ...] = ()  # the run's open change-ledger entries with their undo commands, in lines


class InputError(DrengineError):
    """Bad inventory, runbook, flags or arguments."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class ConnectError(DrengineError):
    """A member or host could not be reached, or did not answer in time."""

    exit_code = ExitCode.FAILED


class ProbeTimeout(ConnectError):
    """A member accepted a connection but did not answer within the read timeout."""


class CommandFailed(DrengineError):
    """A datastore or host refused a statement."""

    exit_code = ExitCode.FAILED


class StepFailed(DrengineError):
    """A runbook step did not reach its goal."""

    exit_code = ExitCode.FAILED


class OperatorStop(DrengineError):
    """The operator aborted, or a gate could not be answered (no terminal, no flag)."""

    exit_code = ExitCode.STOPPED

    def __init__(self, message: str, who: str = "nobody") -> None:
        super().__init__(message)
        self.who = who  # who stopped it: the operator at the terminal, or nobody (no terminal, no flag)


class StepInterrupted(DrengineError):
    """A step passed its deadline or the operator interrupted it: what it sent is journaled,
    whether its last statement took effect is unknown until resume looks again."""

    exit_code = ExitCode.FAILED

    def __init__(self, message: str, by_operator: bool = False) -> None:
        super().__init__(message)
        self.by_operator = by_operator  # Ctrl-C, not a deadline: the run stops, the step is not retried


class LockHeld(DrengineError):
    """Another run holds the cluster lock."""

    exit_code = ExitCode.LOCKED


class LockUnavailable(DrengineError):
    """The lock service (etcd) cannot grant the cluster lock: unreachable or without quorum."""

    exit_code = ExitCode.LOCKED


class LockLost(DrengineError):
    """The run's lock was lost while it ran (lease expired or broken): it stops at the next step boundary."""

    exit_code = ExitCode.LOCKED


class JournalCorrupt(DrengineError):
    """A journal failed verification: a line was edited, removed, inserted or reordered."""

    exit_code = ExitCode.FAILED
