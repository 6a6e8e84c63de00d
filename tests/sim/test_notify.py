"""Notifications reach a local webhook receiver (loopback) when a gate waits, a drill misses
an objective and a run ends, within a second; a dead or refusing receiver is journaled and
never delays the recovery by more than its timeout."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.helpers import ROOT, cli, of_type
from tests.webhook import closed_port, dead_receiver, receiver

SIMULATED = ROOT / "inventory" / "simulated.yaml"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def inventory(tmp_path: Path, *entries: str) -> str:
    path = tmp_path / "inventory.yaml"
    path.write_text("notify:\n" + "".join(f"  - {e}\n" for e in entries) + SIMULATED.read_text())
    return str(path)


def drill(inv: str, run_dir: Path, *extra: str) -> tuple[int, str, float]:
    started = time.monotonic()
    code, out = cli("drill", "mariadb-promote-survivor", "-i", inv, "-c", "sim-mariadb-healthy", "--fault", "kill-primary",
                    "--run-dir", str(run_dir), *extra)
    return code, out, time.monotonic() - started


def test_a_drill_missing_its_objective_reaches_the_webhook_within_a_second(tmp_path: Path) -> None:
    with receiver() as hook, receiver() as slack:
        inv = inventory(tmp_path, f"{{name: ops, url: '{hook.url}'}}", f"{{name: chat, format: slack, url: '{slack.url}'}}")
        code, out, _ = drill(inv, tmp_path / "d", "--rto", "0.001")
        assert code == 1, out
        missed = hook.wait_for(lambda b: b["event"] == "objective_missed")
        ended = hook.wait_for(lambda b: b["event"] == "run_finished")
        chat = slack.wait_for(lambda b: "missed its objective" in b["text"])
    verdict = of_type(tmp_path / "d", "drill_verdict")[0]
    finished = of_type(tmp_path / "d", "run_finished")[0]
    assert 0 <= missed.at - verdict.ts < 1.0
    assert 0 <= ended.at - finished.ts < 1.0
    body = missed.body
    assert body["cluster"] == "sim-mariadb-healthy" and body["runbook"] == "mariadb-promote-survivor"
    assert body["missed"] == ["rto"] and "MISSED the objective of 0.001 s" in body["text"]
    assert body["run_dir"] == str(tmp_path / "d") and body["severity"] == "failure"
    assert ended.body["success"] is False and ended.body["title"] == "drill FAILED on sim-mariadb-healthy"
    assert chat.body["blocks"][0]["type"] == "section" and "MISSED" in chat.body["blocks"][0]["text"]["text"]
    ledger = [json.loads(line) for line in (tmp_path / "d" / "notifications.jsonl").read_text().splitlines()]
    assert {(d["target"], d["event"], d["ok"]) for d in ledger} >= {("ops", "objective_missed", True),
                                                                    ("ops", "run_finished", True)}
    assert "127.0.0.1" not in (tmp_path / "d" / "notifications.jsonl").read_text()  # never the URL


def test_events_filter_what_a_webhook_is_told(tmp_path: Path) -> None:
    with receiver() as hook:
        inv = inventory(tmp_path, f"{{name: ops, url: '{hook.url}', events: [run_finished]}}")
        code, out, _ = drill(inv, tmp_path / "d", "--rto", "0.001")
        assert code == 1
        hook.wait_for(lambda b: b["event"] == "run_finished")
        time.sleep(0.3)
    assert [r.body["event"] for r in hook.received] == ["run_finished"]


def test_a_gate_waiting_at_a_terminal_reaches_the_webhook_within_a_second(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with receiver() as hook:
        inv = inventory(tmp_path, f"{{name: ops, url: '{hook.url}'}}")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = pexpect.spawn(sys.executable, ["-m", "drengine.cli", "run", "mariadb-promote-survivor", "-i", inv,
                                               "-c", "sim-mariadb", "--run-dir", str(run_dir)],
                              cwd=str(ROOT), env=env, encoding="utf-8", timeout=60)
        try:
            child.expect(r"\[p\]roceed")
            waiting = hook.wait_for(lambda b: b["event"] == "gate_waiting")
            asked = of_type(run_dir, "gate_asked")[0]
            assert of_type(run_dir, "gate_answered") == []  # the gate is still waiting for its answer
            child.sendline("a")  # an abort at a confirmation gate asks no reason
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
    assert child.exitstatus == 3
    assert 0 < waiting.at - asked.ts < 1.0
    assert waiting.body["step"] == asked.data["step"] == "promote"
    assert "waits at step promote for an operator's answer" in waiting.body["text"]


def test_a_gate_no_one_can_answer_tells_how_to_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with receiver() as hook:
        inv = inventory(tmp_path, f"{{name: ops, url: '{hook.url}'}}")
        code, out = cli("run", "mariadb-promote-survivor", "-i", inv, "-c", "sim-mariadb", "--run-dir", str(run_dir))
        assert code == 3, out
        stopped = hook.wait_for(lambda b: b["event"] == "gate_waiting")
        hook.wait_for(lambda b: b["event"] == "run_finished" and b["end"] == "stopped")
    answered = of_type(run_dir, "gate_answered")[0]
    assert 0 <= stopped.at - answered.ts < 1.0
    assert f"drengine run --resume {run_dir}" in stopped.body["text"]


def test_a_dead_webhook_delays_nothing_by_more_than_its_timeout(tmp_path: Path) -> None:
    timeout = 1.5
    baseline_code, _, baseline = drill(str(SIMULATED), tmp_path / "baseline", "--rto", "60")
    assert baseline_code == 0
    with dead_receiver() as url:
        inv = inventory(tmp_path, f"{{name: dead, url: '{url}', timeout: {timeout}}}")
        code, out, took = drill(inv, tmp_path / "d", "--rto", "60")
    assert code == 0, out  # the drill passes: a notification never fails a recovery
    events = of_type(tmp_path / "d", "run_started") + of_type(tmp_path / "d", "run_finished")
    run_seconds = events[1].ts - events[0].ts
    base_events = of_type(tmp_path / "baseline", "run_started") + of_type(tmp_path / "baseline", "run_finished")
    base_seconds = base_events[1].ts - base_events[0].ts
    assert run_seconds < base_seconds + 1.0, (run_seconds, base_seconds)  # the run itself never waited on the webhook
    assert took - baseline < timeout + 0.5, (took, baseline)  # only the exit waited, at most the timeout
    assert f"notification run_finished to dead failed: no answer within its timeout of {timeout:g} s" in out
    assert "the recovery was not affected" in out


def test_a_refused_webhook_at_the_end_of_a_drill_is_reported_and_the_drill_goes_on(tmp_path: Path) -> None:
    inv = inventory(tmp_path, f"{{name: gone, url: '{closed_port()}', timeout: 1}}")
    code, out, _ = drill(inv, tmp_path / "d", "--rto", "0.001")
    assert code == 1, out  # failed by its objective, not by the notification
    assert "notification objective_missed to gone failed: could not reach the webhook" in out
    # Sent as the run ended, so not in the journal (nothing follows run_finished): in the ledger and the report.
    ledger = [json.loads(line) for line in (tmp_path / "d" / "notifications.jsonl").read_text().splitlines()]
    assert {(d["event"], d["ok"]) for d in ledger} == {("objective_missed", False), ("run_finished", False)}
    assert "| gone | objective_missed | FAILED | could not reach the webhook" in (tmp_path / "d" / "report.md").read_text()


def test_a_refused_webhook_while_a_gate_waits_is_journaled(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    inv = inventory(tmp_path, f"{{name: gone, url: '{closed_port()}', timeout: 1}}")
    child = pexpect.spawn(sys.executable, ["-m", "drengine.cli", "run", "mariadb-promote-survivor", "-i", inv,
                                           "-c", "sim-mariadb", "--run-dir", str(run_dir)],
                          cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)}, encoding="utf-8", timeout=60)
    try:
        child.expect(r"\[p\]roceed")
        time.sleep(1.0)  # the gate notification goes out after its grace and is refused at once
        child.sendline("a")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 3
    notes = [e for e in of_type(run_dir, "note") if e.data.get("notify_target") == "gone"]
    assert notes and "notification gate_waiting to gone failed: could not reach the webhook" in notes[0].data["text"]
    assert "the run goes on without it" in notes[0].data["text"]
    assert notes[0].seq < of_type(run_dir, "run_finished")[0].seq


def test_a_secret_webhook_url_is_read_from_the_environment_and_never_shown(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with receiver() as hook:
        secret_url = hook.url + "/T000/B000/XXXXsecrettoken"
        monkeypatch.setenv("DRENGINE_TEST_HOOK", secret_url)
        inv = inventory(tmp_path, "{name: chat, format: slack, url_secret: {env: DRENGINE_TEST_HOOK}}")
        code, out, _ = drill(inv, tmp_path / "d", "--rto", "60")
        assert code == 0, out
        got = hook.wait_for(lambda b: "PASSED" in b["text"])
    assert got.path.endswith("XXXXsecrettoken")
    for name in ("journal.jsonl", "report.md", "report.html", "notifications.jsonl"):
        assert "XXXXsecrettoken" not in (tmp_path / "d" / name).read_text(), name
    monkeypatch.delenv("DRENGINE_TEST_HOOK")
    code, out, _ = drill(inv, tmp_path / "again", "--rto", "60")
    assert code == 2 and "notify chat" in out and "DRENGINE_TEST_HOOK, which is not set" in out


def test_a_full_queue_drops_and_says_so_without_waiting(tmp_path: Path) -> None:
    from drengine.inventory import NotifyEvent, NotifyTarget
    from drengine.notify import QUEUE_SIZE, Notice, Notifier

    with dead_receiver() as url:
        notifier = Notifier([NotifyTarget(name="dead", url=url, timeout=0.5)], "test", run_dir=tmp_path)
        started = time.monotonic()
        for i in range(QUEUE_SIZE + 10):
            notifier.send(Notice(NotifyEvent.RUN_FINISHED, f"n{i}", "text", "info"))
        offered = time.monotonic() - started
        closing = time.monotonic()
        failures = notifier.close()
        closed = time.monotonic() - closing
    assert offered < 0.1  # putting on the queue never waits for the webhook
    assert closed < 0.5 + 0.5  # the exit waits at most the webhook's timeout (plus a little)
    dropped = [f for f in failures if f.detail.startswith("dropped")]
    unsent = [f for f in failures if f.detail.startswith("not sent")]
    assert 8 <= len(dropped) <= 10 and len(unsent) >= QUEUE_SIZE - 2
    assert any(f.detail.startswith("still sending") for f in failures)  # the one in flight is named too
    assert (tmp_path / "notifications.jsonl").read_text().count('"ok": false') >= len(failures)


def test_webhook_and_slack_bodies() -> None:
    from drengine.inventory import NotifyEvent
    from drengine.notify import Notice, slack_body, webhook_body

    notice = Notice(NotifyEvent.GATE_WAITING, "gate waiting on c1", "run r waits at step promote", "warning",
                    {"cluster": "c1", "run_dir": "runs/r", "step": "promote"})
    assert webhook_body(notice) == {"source": "drengine", "event": "gate_waiting", "severity": "warning",
                                    "title": "gate waiting on c1", "text": "run r waits at step promote",
                                    "cluster": "c1", "run_dir": "runs/r", "step": "promote"}
    slack = slack_body(notice)
    assert slack["text"] == "gate waiting on c1: run r waits at step promote"
    assert slack["blocks"][0]["text"]["text"] == ":warning: *gate waiting on c1*\nrun r waits at step promote"
    assert slack["blocks"][1]["elements"][0]["text"] == "*cluster*: c1 · *run_dir*: runs/r"
