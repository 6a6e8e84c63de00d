"""The step worker: the thread a step runs in while the engine waits for it, bounded by the
step's deadline on the run's clock (engine._run_bounded).

One thread serves a run's steps one after the other: starting a thread per step cost as much
as a whole step on a simulator. A step that outlives its deadline keeps its thread until its
statement in flight ends; the next step gets another thread, and the old one is done with the
run after it. A thread done with its run waits, idle, for the next run of the process (a few are
kept: a process that runs many runs, as drills and the explorer do, starts a thread per run
otherwise, which cost more than a simulated run's steps)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class Job:
    """One step's run in the worker: its result or its exception, and `done` once it ended."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the engine's thread
            self.error = exc
        finally:
            self.done.set()


Jobs = queue.SimpleQueue[Job | None]
IDLE_KEPT = 4  # idle threads kept for the next runs; more end
_idle: list[tuple[Jobs, threading.Thread]] = []
_idle_lock = threading.Lock()


def _serve(jobs: Jobs) -> None:
    while True:
        while (job := jobs.get()) is not None:
            job.run()
        with _idle_lock:  # done with its run (None): idle, or ends
            if len(_idle) >= IDLE_KEPT:
                return
            _idle.append((jobs, threading.current_thread()))


def _thread_for(name: str) -> tuple[Jobs, threading.Thread]:
    """An idle thread, renamed for its new run, or a new thread; and the queue it serves."""
    with _idle_lock:
        idle = _idle.pop() if _idle else None
    if idle is not None:
        jobs, thread = idle
        thread.name = name
        return jobs, thread
    jobs = queue.SimpleQueue()
    thread = threading.Thread(target=_serve, args=(jobs,), name=name, daemon=True)
    thread.start()
    return jobs, thread


class StepWorker:
    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: Jobs | None = None
        self._thread: threading.Thread | None = None
        self._last: Job | None = None

    def submit(self, fn: Callable[[], Any]) -> Job:
        if self._last is not None and not self._last.done.is_set():
            self.close()  # still busy past its deadline: done with the run after its statement in flight
        if self._jobs is None:
            self._jobs, self._thread = _thread_for(self.name)
        job = self._last = Job(fn)
        self._jobs.put(job)
        return job

    def close(self) -> None:
        """The thread is done with this run: idle at once when its last job has ended, else
        once it has."""
        jobs, thread = self._jobs, self._thread
        if jobs is None or thread is None:
            return
        self._jobs = self._thread = None
        if self._last is None or self._last.done.is_set():
            with _idle_lock:  # it waits for its next job already
                if len(_idle) < IDLE_KEPT:
                    _idle.append((jobs, thread))
                    return
        jobs.put(None)  # it parks itself (or ends) after its job


class StopSignal:
    """A stop asked from another thread, taken by a run as a Ctrl-C: at its next step boundary,
    or at once in the step it waits for (which is told to stop and its connections closed).
    Ctrl-C reaches only the main thread; a site run hands it this way to the cluster runs it has
    going side by side (drengine/site/run.py)."""

    def __init__(self) -> None:
        self._set = threading.Event()
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []

    def set(self) -> None:
        with self._lock:
            self._set.set()
            hooks = list(self._hooks)
        for hook in hooks:
            hook()

    def is_set(self) -> bool:
        return self._set.is_set()

    @contextmanager
    def calling(self, hook: Callable[[], None]) -> Iterator[None]:
        """While inside: `hook` is called when the stop is asked (at once if it already was)."""
        with self._lock:
            self._hooks.append(hook)
            already = self._set.is_set()
        if already:
            hook()
        try:
            yield
        finally:
            with self._lock:
                self._hooks.remove(hook)
