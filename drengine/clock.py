"""Time, written once: the clock every wait and deadline reads, and the one poll helper.

The engine, the connectors and the simulators take a `Clock` instead of calling `time`
directly, so the fault-space explorer and the tests can run a whole recovery on a simulated
clock: `SimulatedClock.sleep` advances time instantly, so waits cost nothing and runs are
deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...

    def sleep(self, seconds: float) -> None: ...

    def wall(self) -> float:
        """Seconds since the epoch, for timestamps shown to people."""
        ...

    def wait_for(self, done: threading.Event, seconds: float, at_deadline: Callable[[], None]) -> bool:
        """Wait until `done` is set (True) or `seconds` pass on this clock (False); at the deadline
        `at_deadline` is called first. A step's worker is bounded this way."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def wall(self) -> float:
        return time.time()

    def wait_for(self, done: threading.Event, seconds: float, at_deadline: Callable[[], None]) -> bool:
        return _wait_real(done, seconds, at_deadline)


def _wait_real(done: threading.Event, seconds: float, at_deadline: Callable[[], None]) -> bool:
    if done.wait(max(0.0, seconds)):
        return True
    at_deadline()
    return False


class SimulatedClock:
    """A clock that only moves when someone sleeps on it (or `advance` is called).

    A deadline someone waits for (`wait_for`) passes inside the `advance` that moves the clock
    past it, in the thread that moved it (a step's worker sleeping, the explorer's slow
    statement): what happens at the deadline happens at that exact point of the run, before
    that thread goes on, so a run on this clock is the same run every time."""

    def __init__(self, start: float = 0.0, epoch: float = 1_790_000_000.0) -> None:
        self._now = start
        self._epoch = epoch
        self._lock = threading.Lock()
        self._alarms: list[tuple[float, Callable[[], None]]] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)
            if not self._alarms:
                return
            due = [fire for at, fire in self._alarms if at <= self._now]
            self._alarms = [(at, fire) for at, fire in self._alarms if at > self._now]
        for fire in due:
            fire()

    def wall(self) -> float:
        return self._epoch + self.now()

    def wait_for(self, done: threading.Event, seconds: float, at_deadline: Callable[[], None]) -> bool:
        """Nothing but a sleep on this clock moves it, so `done` is waited for without a real
        timeout: the deadline fires from the `advance` that passes it."""
        passed: list[bool] = []

        def fire() -> None:
            passed.append(True)
            at_deadline()

        with self._lock:
            at = self._now + seconds
            due = at <= self._now
            if not due:
                self._alarms.append((at, fire))
        if due:
            fire()
        try:
            done.wait()
        finally:
            with self._lock:
                self._alarms = [(t, f) for t, f in self._alarms if f is not fire]
        return not passed


SYSTEM = SystemClock()


def wait_until(check: Callable[[], bool], seconds: float, interval: float = 0.05, clock: Clock = SYSTEM) -> bool:
    """Poll `check` until it is true or `seconds` have passed on `clock`; the last look is
    taken at or after the deadline, so a condition that becomes true just in time counts."""
    deadline = clock.now() + seconds
    while True:
        if check():
            return True
        remaining = deadline - clock.now()
        if remaining <= 0:
            return False
        clock.sleep(min(interval, remaining))


class Deadline:
    """A point in time on a clock, for code that must stop between two statements."""

    def __init__(self, seconds: float, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self.at = clock.now() + seconds

    def remaining(self) -> float:
        return self.at - self.clock.now()

    def passed(self) -> bool:
        return self.remaining() <= 0


class ScaledClock:
    """Time running `speed` times faster than `base`: simulators served in labs, or simulated
    clusters an inventory speeds up (`simulated: {speed: N}`), so that heartbeats, elections
    and recoveries of realistic length pass in a fraction of the real time."""

    def __init__(self, speed: float, base: Clock = SYSTEM) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self.speed = speed
        self._base = base
        self._start = base.now()
        self._start_wall = base.wall()

    def _elapsed(self) -> float:
        return (self._base.now() - self._start) * self.speed

    def now(self) -> float:
        return self._start + self._elapsed()

    def sleep(self, seconds: float) -> None:
        self._base.sleep(seconds / self.speed)

    def wall(self) -> float:
        return self._start_wall + self._elapsed()

    def wait_for(self, done: threading.Event, seconds: float, at_deadline: Callable[[], None]) -> bool:
        return _wait_real(done, seconds / self.speed, at_deadline)


def clock_at_speed(speed: float) -> Clock:
    """The system clock, sped up when `speed` is not 1."""
    return SYSTEM if speed == 1 else ScaledClock(speed)
