"""Notifications: tell people when a gate waits for an answer, a run ends, or a drill misses
an objective, through webhooks (drengine's JSON body, or a Slack-compatible incoming webhook).

A notification must never slow down or fail a recovery. The notifier follows the journal as a
listener and only ever puts a message on a bounded queue; one courier thread per webhook sends
them with the webhook's timeout. A queue that is full drops the message and says so. Every
attempt goes to `notifications.jsonl` in the run directory (never the URL: incoming-webhook URLs
carry their token); a failure seen while the run is still going is also journaled, by the
journal's own thread at the next event. At exit the notifier waits at most the longest timeout
of its webhooks for what is still being sent, then gives up and records what was not sent.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drengine.inventory import NotifyEvent, NotifyTarget
from drengine.journal import Entry, Event, JournalWriter
from drengine.redact import REDACTOR

LEDGER_FILE = "notifications.jsonl"
GATE_GRACE = 0.25  # a gate answered by flags within this time is not "waiting" for anyone
QUEUE_SIZE = 32


@dataclass(frozen=True)
class Notice:
    """What happened, in words, with the facts a receiver may route on."""

    event: NotifyEvent
    title: str
    text: str
    severity: str  # "info", "warning" or "failure"
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    target: str
    event: str
    ok: bool
    detail: str
    seconds: float
    at: float


def webhook_body(notice: Notice) -> dict[str, Any]:
    """drengine's own JSON body: stable field names for routing, and the sentence for people."""
    return {"source": "drengine", "event": notice.event.value, "severity": notice.severity, "title": notice.title,
            "text": notice.text, **notice.facts}


SLACK_EMOJI = {"info": ":white_check_mark:", "warning": ":warning:", "failure": ":rotating_light:"}


def slack_body(notice: Notice) -> dict[str, Any]:
    """Slack's incoming-webhook format: `text` (also the fallback of notifications) and blocks."""
    facts = [f"*{k}*: {v}" for k, v in notice.facts.items() if k in ("cluster", "runbook", "run_dir", "host", "operator")]
    headline = f"{SLACK_EMOJI.get(notice.severity, '')} *{notice.title}*".strip()
    return {
        "text": f"{notice.title}: {notice.text}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{headline}\n{notice.text}"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(facts) or "drengine"}]},
        ],
    }


class _Courier:
    """One webhook: a bounded queue and the thread that empties it."""

    def __init__(self, target: NotifyTarget, url: str, record: Callable[[Delivery], None]) -> None:
        self.target = target
        self._url = url
        self._record = record
        self.queue: queue.Queue[Notice | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self.thread = threading.Thread(target=self._loop, name=f"notify-{target.name}", daemon=True)
        self.thread.start()

    def offer(self, notice: Notice) -> None:
        if notice.event not in self.target.events:
            return
        try:
            self.queue.put_nowait(notice)
        except queue.Full:
            self._record(Delivery(self.target.name, notice.event.value, False,
                                  f"dropped: {QUEUE_SIZE} notifications were already waiting for this webhook",
                                  0.0, time.time()))

    def _loop(self) -> None:
        while True:
            notice = self.queue.get()
            if notice is None:
                return
            self._record(self._send(notice))

    def _send(self, notice: Notice) -> Delivery:
        body = slack_body(notice) if self.target.format == "slack" else webhook_body(notice)
        data = REDACTOR.text(json.dumps(body)).encode()
        request = urllib.request.Request(self._url, data=data, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "drengine"})
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=self.target.timeout) as response:  # noqa: S310 - http(s) only, validated
                status = int(response.status)
            ok, detail = 200 <= status < 300, f"HTTP {status}"
        except urllib.error.HTTPError as exc:
            ok, detail = False, f"the webhook answered HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, TimeoutError) or isinstance(exc, TimeoutError) or "timed out" in str(reason):
                detail = f"no answer within its timeout of {self.target.timeout:g} s"
            else:
                detail = f"could not reach the webhook ({reason})"
            ok = False
        return Delivery(self.target.name, notice.event.value, ok, REDACTOR.text(detail),
                        round(time.monotonic() - started, 3), time.time())


class Notifier:
    """A journal listener that turns gates, run ends and missed objectives into notifications."""

    def __init__(self, targets: list[NotifyTarget], where: str, run_dir: Path | None = None,
                 runs_root: Path = Path("runs"), gate_grace: float = GATE_GRACE) -> None:
        self.targets = targets
        self.run_dir = run_dir
        self.runs_root = runs_root
        self.gate_grace = gate_grace
        self.deliveries: list[Delivery] = []
        self._context: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._failures: deque[Delivery] = deque()
        self._journal: JournalWriter | None = None
        self._journaling = False
        self._finished = False
        self._gate: tuple[int, threading.Timer] | None = None
        self._couriers = [_Courier(t, t.resolve_url(where), self._record) for t in targets]

    # -- wiring --------------------------------------------------------------------------------
    def bind(self, journal: JournalWriter) -> None:
        """Journal notification failures into this run's journal (from the journal's own thread)."""
        self._journal = journal
        self.run_dir = journal.run_dir

    def around(self, journal: JournalWriter, backend: Any, walk: Callable[[], Any]) -> Any:
        """An `around_walk` for ordinary runs: bind to the journal, then walk."""
        self.bind(journal)
        return walk()

    # -- the listener ----------------------------------------------------------------------------
    def on_event(self, entry: Entry) -> None:
        if not self._couriers:
            return
        if entry.type in (Event.RUN_STARTED, Event.RUN_RESUMED):
            self._context = {k: entry.data.get(k) for k in ("run_id", "cluster", "runbook", "mode", "operator", "host")}
            if self.run_dir is None and entry.data.get("run_id"):
                self.run_dir = self.runs_root / str(entry.data["run_id"])
        elif entry.type is Event.GATE_ASKED:
            self._gate_asked(entry)
        elif entry.type is Event.GATE_ANSWERED:
            self._gate_answered(entry)
        elif entry.type is Event.DRILL_VERDICT:
            self._drill_verdict(entry)
        elif entry.type in (Event.APPROVAL_REQUESTED, Event.APPROVAL_ALONE):
            self._approval(entry)
        elif entry.type is Event.RUN_FINISHED:
            self._finished = True
            self._run_finished(entry)
        if entry.type is not Event.RUN_FINISHED:
            self._journal_failures()

    def send(self, notice: Notice) -> None:
        for courier in self._couriers:
            courier.offer(notice)

    # -- events ------------------------------------------------------------------------------------
    def _facts(self) -> dict[str, Any]:
        return {**self._context, "run_dir": str(self.run_dir) if self.run_dir else None}

    def _gate_asked(self, entry: Entry) -> None:
        self._cancel_gate()
        d = entry.data
        notice = Notice(
            NotifyEvent.GATE_WAITING, f"gate waiting on {self._context.get('cluster', '?')}",
            f"run {self._context.get('run_id', '?')} ({self._context.get('runbook', '?')}) waits at step {d.get('step')} "
            f"for an operator's answer ({d.get('level')} gate): it would {d.get('summary', '')}"
            + "".join(f". RISK: {r}" for r in d.get("risks") or []),
            "warning", {**self._facts(), "step": d.get("step"), "level": d.get("level"), "asked_at": entry.ts},
        )
        timer = threading.Timer(self.gate_grace, self._gate_still_waiting, args=(entry.seq, notice))
        timer.daemon = True
        with self._lock:
            self._gate = (entry.seq, timer)
        timer.start()

    def _gate_still_waiting(self, seq: int, notice: Notice) -> None:
        with self._lock:
            if self._gate is None or self._gate[0] != seq:
                return
            self._gate = None
        self.send(notice)

    def _cancel_gate(self) -> None:
        with self._lock:
            pending, self._gate = self._gate, None
        if pending is not None:
            pending[1].cancel()

    def _gate_answered(self, entry: Entry) -> None:
        self._cancel_gate()
        d = entry.data
        if d.get("answer") != "stopped":
            return
        # No one and no flag could answer: the run stops here and waits for an operator to resume it.
        run_dir = self._facts()["run_dir"]
        self.send(Notice(
            NotifyEvent.GATE_WAITING, f"run stopped at a gate on {self._context.get('cluster', '?')}",
            f"run {self._context.get('run_id', '?')} ({self._context.get('runbook', '?')}) stopped at step "
            f"{d.get('step')}: {d.get('reason', '')} Resume it with `drengine run --resume {run_dir}`.",
            "warning", {**self._facts(), "step": d.get("step")},
        ))

    def _approval(self, entry: Entry) -> None:
        """The two-person rule: a gate waits for another person (the command to approve it), or one
        person broke glass with --alone (never silent)."""
        d = entry.data
        cluster = self._context.get("cluster", "?")
        if entry.type is Event.APPROVAL_REQUESTED:
            self._cancel_gate()  # this notice says more than the generic "gate waiting" one
            self.send(Notice(
                NotifyEvent.GATE_WAITING, f"approval needed on {cluster}",
                f"run {self._context.get('run_id', '?')} ({self._context.get('runbook', '?')}) waits at step "
                f"{d.get('step')} for another person ({d.get('level')} gate: {d.get('summary', '')}); approved so far by "
                f"{', '.join(str(w) for w in d.get('have') or [])}. To approve: `{d.get('command', '')}`",
                "warning", {**self._facts(), "step": d.get("step"), "command": d.get("command"),
                            "needed": d.get("needed"), "request_id": d.get("request_id")},
            ))
            return
        self.send(Notice(
            NotifyEvent.BREAK_GLASS, f"two-person rule broken on {cluster}", str(d.get("text", "")),
            "failure", {**self._facts(), "step": d.get("step"), "who": d.get("who"), "reason": d.get("reason")},
        ))

    def _drill_verdict(self, entry: Entry) -> None:
        missed = [o for o in entry.data.get("objectives") or [] if o.get("met") is False]
        if not missed:
            return
        self.send(Notice(
            NotifyEvent.OBJECTIVE_MISSED, f"drill missed its objective on {self._context.get('cluster', '?')}",
            f"drill of {self._context.get('runbook', '?')} ({entry.data.get('fault', '?')}): "
            + "; ".join(str(o.get("text", "")) for o in missed),
            "failure", {**self._facts(), "missed": [o.get("name") for o in missed], "objectives": entry.data.get("objectives")},
        ))

    def _run_finished(self, entry: Entry) -> None:
        self._cancel_gate()
        d = entry.data
        success = bool(d.get("success"))
        what = "drill" if self._context.get("mode") == "drill" else "run"
        verdict = ("PASSED" if success else "FAILED") if what == "drill" else ("done" if success else str(d.get("end")))
        self.send(Notice(
            NotifyEvent.RUN_FINISHED, f"{what} {verdict} on {self._context.get('cluster', '?')}",
            f"{what} {self._context.get('run_id', '?')} ({self._context.get('runbook', '?')}) ended {d.get('end')}: "
            f"{d.get('summary', '')} (journal: {self._facts()['run_dir']})",
            "info" if success else "failure", {**self._facts(), "end": d.get("end"), "success": success},
        ))

    # -- the ledger ----------------------------------------------------------------------------------
    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)
            if not delivery.ok:
                self._failures.append(delivery)
            run_dir = self.run_dir
        if run_dir is None:
            return
        line = json.dumps({"at": delivery.at, "target": delivery.target, "event": delivery.event, "ok": delivery.ok,
                           "detail": delivery.detail, "seconds": delivery.seconds}, sort_keys=True)
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            with self._lock, open(run_dir / LEDGER_FILE, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            pass  # the ledger is a courtesy: a full disk must not break the courier

    def _journal_failures(self) -> None:
        if self._journal is None or self._journaling or self._finished:
            return
        self._journaling = True
        try:
            while True:
                with self._lock:
                    if not self._failures:
                        return
                    failed = self._failures.popleft()
                self._journal.append(
                    Event.NOTE, text=f"notification {failed.event} to {failed.target} failed: {failed.detail}; "
                                     f"the run goes on without it", notify_target=failed.target, notify_event=failed.event,
                )
        finally:
            self._journaling = False

    # -- the end -----------------------------------------------------------------------------------------
    def close(self) -> list[Delivery]:
        """Let what is queued go out, waiting at most the longest webhook timeout; return the failures."""
        self._cancel_gate()
        if not self._couriers:
            return []
        deadline = time.monotonic() + max(c.target.timeout for c in self._couriers) + 0.2
        for courier in self._couriers:
            try:
                courier.queue.put_nowait(None)
            except queue.Full:
                pass  # the courier is stuck on a full queue: the deadline below ends the wait
        for courier in self._couriers:
            courier.thread.join(max(0.0, deadline - time.monotonic()))
        for courier in self._couriers:
            while True:
                try:
                    notice = courier.queue.get_nowait()
                except queue.Empty:
                    break
                if notice is not None:
                    self._record(Delivery(courier.target.name, notice.event.value, False,
                                          "not sent: drengine exited while the webhook was still busy", 0.0, time.time()))
            if courier.thread.is_alive():
                self._record(Delivery(courier.target.name, "?", False,
                                      f"still sending when drengine exited (timeout {courier.target.timeout:g} s)",
                                      0.0, time.time()))
        with self._lock:
            return [d for d in self.deliveries if not d.ok]
