"""A site run without a terminal runs independent clusters side by side, in threads that Ctrl-C
does not reach: Ctrl-C must stop every cluster run in flight (each ends stopped, resumable and
journaled), and `site run --resume` continues them."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from drengine.errors import OperatorStop, StepInterrupted
from drengine.gates import FlagPolicy
from drengine.journal import Entry, Event, verify
from drengine.site.run import SiteRequest, resume_site, run_site
from tests.helpers import of_type
from tests.sim.test_site_sim import SITE, request, turns


def test_ctrl_c_stops_every_cluster_run_in_flight_and_resume_continues_them(tmp_path: Path) -> None:
    site_dir = tmp_path / "site"
    sent = threading.Event()
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def listeners(cluster: str) -> list[Callable[[Entry], None]]:
        def hear(entry: Entry) -> None:
            if entry.type is not Event.STEP_STARTED:
                return
            with lock:
                seen[cluster] = seen.get(cluster, 0) + 1
                both = len(seen) == 2 and not sent.is_set()
                if both:
                    sent.set()
            if both:
                os.kill(os.getpid(), signal.SIGINT)  # the operator's Ctrl-C, once both runs are going
            time.sleep(1.0)  # the runs are in flight when the site's main thread takes it

        return [hear]

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises((OperatorStop, StepInterrupted)) as stopped:
            run_site(request(SITE, site_dir, parallel=4, listeners=listeners))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped.value.resume_with == "drengine site run --resume" and stopped.value.run_dir == site_dir
    # Both runs that were going stopped at once (a step or two in), not at their ends.
    for cluster in ("site-ceph", "site-galera"):
        finished = of_type(site_dir / cluster, "run_finished")
        assert [f.data["end"] for f in finished] in (["stopped"], ["interrupted"]), (cluster, finished)
        assert finished[0].data["resumable"] is True
        assert "Ctrl-C" in finished[0].data["summary"]
        assert seen[cluster] <= 2, f"{cluster} went on for {seen[cluster]} steps after the Ctrl-C"
        verify(site_dir / cluster)
    phases = turns(site_dir)
    assert ("site-ceph", "stopped") in phases and ("site-galera", "stopped") in phases
    assert not any(c == "site-mariadb" for c, _ in phases), "no turn starts after the Ctrl-C"
    assert of_type(site_dir, "run_finished")[-1].data["end"] == "stopped"
    assert any("Ctrl-C" in str(n.data.get("text")) for n in of_type(site_dir, "note"))

    def again(inv: object) -> SiteRequest:
        return SiteRequest(inventory=inv, gates=FlagPolicy(yes=True, accept_data_loss=True), parallel=4)  # type: ignore[arg-type]

    outcome = resume_site(site_dir, again)
    assert outcome.success, outcome.summary
    for cluster in ("site-ceph", "site-galera"):
        assert of_type(site_dir / cluster, "run_resumed"), f"the {cluster} run was resumed, not started again"
        assert not (site_dir / f"{cluster}.2").exists()
        assert of_type(site_dir / cluster, "run_finished")[-1].data["success"] is True
    assert ("site-mariadb", "recovered") in turns(site_dir)
    verify(site_dir)
