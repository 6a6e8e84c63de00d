"""The etcd lock when etcd cannot be reached, on loopback sockets and no etcd at all: a port that
refuses and a port that accepts but never answers. The refusal is bounded by the request timeout
per member, says what each member did, and offers the break glass."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from drengine.errors import LockUnavailable
from drengine.inventory import EtcdLockSettings
from drengine.lock import me, open_lock


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A listener that accepts connections and never answers (a hung member)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_unreachable_etcd_is_refused_in_plain_words_within_the_timeouts(silent_port: int, tmp_path: Path) -> None:
    refused = _free_port()
    settings = EtcdLockSettings.model_validate({
        "backend": "etcd", "endpoints": [f"http://127.0.0.1:{refused}", f"http://127.0.0.1:{silent_port}"],
        "timeout": 0.5, "lease_ttl": 2,
    })
    started = time.monotonic()
    with pytest.raises(LockUnavailable) as err:
        open_lock(settings, "c1").acquire(me("r1", tmp_path))
    took = time.monotonic() - started
    message = str(err.value)
    assert err.value.exit_code == 4
    assert f"http://127.0.0.1:{refused} refuses connections" in message
    assert f"http://127.0.0.1:{silent_port} did not answer within 0.5 s" in message
    assert "no etcd member answers" in message and '--lock local --reason "..."' in message
    # tries for lease_ttl (2 s), then one more pass and one diagnosis, each request bounded by the timeout
    assert took < 2 + 3 * 0.5 + 1.0, f"took {took:.2f} s"
