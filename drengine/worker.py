"""The step worker: the thread a step runs in while the engine waits for it, bounded by the
step's deadline on the run's clock (engine._run_bounded).

One thread serves a run's steps one after the other: starting a thread per step cost as much
as a whole step on a simulator. A step that outlives its deadline keeps its thread until its
statement in flight ends; the next step gets a new thread, and the old one ends after it."""

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


def _serve(jobs: queue.SimpleQueue[Job | None]) -> None:
    while (job := jobs.get()) is not None:
        job.run()


class StepWorker:
    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Job | None] | None = None
        self._last: Job | None = None

    def submit(self, fn: Callable[[], Any]) -> Job:
        if self._last is not None and not self._last.done.is_set():
            self.close()  # still busy past its deadline: it ends after its statement in flight
        if self._jobs is None:
            self._jobs = queue.SimpleQueue()
            threading.Thread(target=_serve, args=(self._jobs,), name=self.name, daemon=True).start()
        job = self._last = Job(fn)
        self._jobs.put(job)
        return job

    def close(self) -> None:
        """The thread ends once its job (if any) has."""
        if self._jobs is not None:
            self._jobs.put(None)
            self._jobs = None


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
