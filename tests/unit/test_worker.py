"""The step worker: a run's steps in one thread; a thread done with its run serves the next run
of the process, and a thread still busy past its step's deadline is never handed a new step."""

from __future__ import annotations

import threading

import pytest

from drengine.worker import StepWorker

pytestmark = pytest.mark.unit


def _thread_of(worker: StepWorker) -> threading.Thread:
    job = worker.submit(threading.current_thread)
    assert job.done.wait(5) and job.error is None
    thread: threading.Thread = job.result
    return thread


def test_the_steps_of_a_run_share_a_thread_and_the_next_run_reuses_it_renamed() -> None:
    first = StepWorker("steps-run-1")
    thread = _thread_of(first)
    assert thread is not threading.current_thread()
    assert _thread_of(first) is thread  # the run's next step: the same thread
    first.close()
    second = StepWorker("steps-run-2")
    assert _thread_of(second) is thread  # done with run 1, it serves run 2
    assert thread.name == "steps-run-2"
    second.close()


def test_a_thread_busy_past_its_deadline_is_not_given_the_next_step() -> None:
    release = threading.Event()
    worker = StepWorker("steps-run-slow")
    stuck = worker.submit(lambda: (release.wait(5), threading.current_thread())[1])
    assert not stuck.done.wait(0.05)  # its deadline passed: the engine moves on
    other = _thread_of(worker)  # the next step gets another thread
    release.set()
    assert stuck.done.wait(5)
    assert other is not stuck.result
    worker.close()
    # An error in a step is handed back to the engine, and the thread goes on serving.
    failing = StepWorker("steps-run-error")
    job = failing.submit(lambda: 1 / 0)
    assert job.done.wait(5) and isinstance(job.error, ZeroDivisionError)
    assert _thread_of(failing).is_alive()
    failing.close()
