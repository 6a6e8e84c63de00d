"""The etcd lock: one run per cluster across every machine of the team.

etcd does the consensus; drengine only uses its documented primitives through the v3 JSON
gateway that every etcd (3.4 and later) serves on its client URL, with the maintained
`etcd3gw` client:
- a lease (`lease_ttl` seconds) granted at the start and renewed by a keep-alive thread for the
  whole run: a holder that dies or is cut off loses the lock after at most `lease_ttl` seconds;
- the lock key `PREFIX/clusters/CLUSTER/lock`, created by a transaction that succeeds only if
  the key does not exist (exactly one run wins), attached to the lease, holding the holder's
  identity;
- `--break-lock`: a transaction that replaces the key only if it still holds the holder it
  named (exactly one breaker wins), then revokes that holder's lease;
- the run registry: `PREFIX/clusters/CLUSTER/runs/RUN_ID`, one record per run, not attached to
  the run's lease (a crashed run stays visible as interrupted); finished runs expire after a
  month.

Every request is bounded by `timeout` per member; members are tried in turn, so one dead
member costs at most one connection refusal or one timeout. When no member can serve the
request, the message says what each member answered and how to break glass.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from pydantic import ValidationError

from drengine.errors import LockHeld, LockUnavailable
from drengine.lock import HeldLock, Holder, LockBackend, RunState

if TYPE_CHECKING:
    from etcd3gw.client import Etcd3Client

    from drengine.inventory import EtcdLockSettings

T = TypeVar("T")
TRIES = 5  # a key can vanish (lease expired) between a failed create and the read of its holder
FINISHED_KEPT_SECONDS = 30 * 86400
RENEWALS_PER_TTL = 3
BREAK_NOTICE_SECONDS = 86400  # how long a broken run can learn who broke its lock
PASS_PAUSE = 0.2
DOWN_WORDS = ("refuses connections", "did not answer", "cannot be reached", "does not resolve")


class Unreachable(Exception):
    """No etcd member could serve a request; `failures` says what each one did."""

    def __init__(self, failures: list[str]) -> None:
        super().__init__("; ".join(failures))
        self.failures = failures


def _error_text(detail: str | None) -> str:
    """etcd's gateway answers errors as JSON {"error": ..., "message": ...}; keep only the words."""
    if not detail:
        return ""
    try:
        body = json.loads(detail)
    except ValueError:
        return detail.strip()[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or detail)[:200]
    return detail.strip()[:200]


def _words(exc: BaseException, timeout: float) -> str:
    from etcd3gw import exceptions

    text = str(exc)
    if isinstance(exc, exceptions.ConnectionTimeoutError):
        detail = _error_text(exc.detail_text) if exc.detail_text and "timed out" not in exc.detail_text else ""
        return f"did not answer within {timeout:g} s" + (f" ({detail})" if detail else "")
    if isinstance(exc, exceptions.ConnectionFailedError):
        detail = exc.detail_text or ""
        tls = re.search(r"\[SSL: [A-Z_]+\] ([^(')]+)", detail)
        if tls:
            return f"fails the TLS handshake ({tls.group(1).strip()}; check `tls:` in the inventory's `lock:`)"
        if "Connection refused" in detail:
            return "refuses connections (etcd not running there?)"
        if "Name or service not known" in detail or "name resolution" in detail:
            return "has a name that does not resolve (DNS)"
        if "ConnectionPool" in detail:
            reason = re.search(r"\] ([^'\"]+)", detail)
            return f"cannot be reached ({reason.group(1).strip() if reason else detail[-120:]})"
        return f"is unavailable ({_error_text(detail) or text})"
    if isinstance(exc, ValueError):
        return "answered something that is not etcd's v3 gateway"
    return _error_text(getattr(exc, "detail_text", None)) or text or type(exc).__name__


class Gateway:
    """An etcd cluster through its v3 JSON gateway, one member at a time. Not shared between threads."""

    def __init__(self, settings: EtcdLockSettings) -> None:
        self.settings = settings
        self.endpoints = list(settings.endpoints)
        self.clients = [self._client(url) for url in self.endpoints]
        self.current = 0
        self._authenticated: set[int] = set()
        self._password: str | None = None

    def _client(self, url: str) -> Etcd3Client:
        import requests
        from etcd3gw.client import Etcd3Client

        parts = urlsplit(url)
        tls = self.settings.tls
        session = requests.Session()
        # Environment settings are ignored: REQUESTS_CA_BUNDLE would silently replace the inventory's
        # CA file (requests lets it win over a session's `verify`), and a proxy has no place between
        # drengine and its lock service.
        session.trust_env = False
        if tls is not None and tls.ca_file:
            session.verify = str(Path(tls.ca_file).expanduser())
        if tls is not None and tls.cert_file and tls.key_file:
            session.cert = (str(Path(tls.cert_file).expanduser()), str(Path(tls.key_file).expanduser()))
        return Etcd3Client(host=parts.hostname or "", port=parts.port or 2379, protocol=parts.scheme,
                           timeout=self.settings.timeout, api_path="/v3/", session=session)

    def call(self, request: Callable[[Etcd3Client], T], patience: float = 0.0) -> T:
        """Send one request to the first member that serves it; raise Unreachable when none does.

        With `patience`, passes over the members are repeated for that many seconds: electing a new
        leader after one dies takes etcd a second or two, during which nobody serves writes."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return self._one_pass(request)
            except Unreachable:
                if time.monotonic() + PASS_PAUSE >= deadline:
                    raise
            time.sleep(PASS_PAUSE)

    def _one_pass(self, request: Callable[[Etcd3Client], T]) -> T:
        from etcd3gw import exceptions

        failures = []
        for k in range(len(self.clients)):
            index = (self.current + k) % len(self.clients)
            client = self.clients[index]
            try:
                result = self._send(index, client, request)
            except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError, ValueError) as exc:
                failures.append(f"{self.endpoints[index]} {_words(exc, self.settings.timeout)}")
                continue
            self.current = index
            return result
        raise Unreachable(failures)

    def _send(self, index: int, client: Etcd3Client, request: Callable[[Etcd3Client], T]) -> T:
        from etcd3gw import exceptions

        self._authenticate(index, client)
        try:
            return request(client)
        except exceptions.Etcd3Exception as exc:
            if "invalid auth token" not in (exc.detail_text or "") or self.settings.user is None:
                raise
            # Simple tokens are kept by the member that issued them, for a few minutes: log in again.
            self._authenticated.discard(index)
            self._authenticate(index, client)
            return request(client)

    def _authenticate(self, index: int, client: Etcd3Client) -> None:
        if self.settings.user is None or index in self._authenticated:
            return
        from etcd3gw import exceptions

        if self._password is None:
            assert self.settings.password is not None
            self._password = self.settings.password.resolve("lock.password (etcd)")
        try:
            answer = client.post(client.get_url("/auth/authenticate"), json={"name": self.settings.user, "password": self._password})
        except (exceptions.ConnectionFailedError, exceptions.ConnectionTimeoutError):
            raise
        except exceptions.Etcd3Exception as exc:
            raise LockUnavailable(
                f"etcd at {self.endpoints[index]} refused to log in user {self.settings.user} "
                f"(password from {self.settings.password.describe() if self.settings.password else '?'}): "
                f"{_error_text(exc.detail_text)}; check the user and the secret named in the inventory's `lock:`"
            ) from None
        client.session.headers["Authorization"] = str(answer["token"])
        self._authenticated.add(index)

    def diagnose(self) -> tuple[list[str], bool]:
        """What each member says about itself, and whether one answers without a leader (lost quorum)."""
        from etcd3gw import exceptions

        lines, leaderless = [], False
        for url, client in zip(self.endpoints, self.clients, strict=True):
            try:
                status: Any = client.status()
            except (exceptions.Etcd3Exception, ValueError) as exc:
                lines.append(f"{url} {_words(exc, self.settings.timeout)}")
                continue
            errors = [str(e) for e in status.get("errors", [])]
            if any("no leader" in e for e in errors) or not status.get("leader") or status.get("leader") == "0":
                leaderless = True
                lines.append(f"{url} answers but has no leader ({'; '.join(errors) or 'no leader elected'})")
            else:
                lines.append(f"{url} answers and has a leader")
        return lines, leaderless


def _kv(response: Any) -> dict[str, Any] | None:
    """The first key-value of a transaction's range response, if the key exists."""
    for part in response.get("responses", []):
        kvs = part.get("response_range", {}).get("kvs", [])
        if kvs:
            found: dict[str, Any] = kvs[0]
            return found
    return None


def _holder(kv: dict[str, Any]) -> Holder:
    from etcd3gw.utils import _decode

    try:
        holder = Holder.model_validate_json(_decode(kv.get("value", "")))
    except (ValueError, ValidationError):
        holder = Holder(run_id="(unreadable lock key)", user="?", host="?", pid=0)
    return holder.model_copy(update={"lease": int(kv.get("lease", 0))})


class EtcdLock(LockBackend):
    backend = "etcd"

    def __init__(self, settings: EtcdLockSettings, cluster: str) -> None:
        self.settings = settings
        self.cluster = cluster
        base = f"{settings.prefix}/clusters/{cluster}"
        self.lock_key = f"{base}/lock"
        self.runs_prefix = f"{base}/runs/"
        self.where = f"etcd key {self.lock_key} at {', '.join(settings.endpoints)}"
        self.gateway = Gateway(settings)

    # -- requests, with etcd's unavailability turned into the operator's message --------------
    def call(self, request: Callable[[Etcd3Client], T], doing: str) -> T:
        """A request while the operator waits: etcd gets `lease_ttl` seconds to serve it (a leader
        election), the time a dead holder's lock takes to free itself anyway."""
        from etcd3gw import exceptions

        try:
            return self.gateway.call(request, patience=self.settings.lease_ttl)
        except Unreachable as exc:
            raise LockUnavailable(self._unavailable(doing, exc)) from None
        except exceptions.Etcd3Exception as exc:
            raise LockUnavailable(
                f"etcd refused to {doing} for cluster {self.cluster}: {_error_text(exc.detail_text) or exc}. "
                f"{self._break_glass()}"
            ) from None

    def _unavailable(self, doing: str, exc: Unreachable) -> str:
        members, leaderless = self.gateway.diagnose()
        if leaderless:
            verdict = "etcd has lost its quorum (the members that answer have no leader; most members must be up to grant a lock)"
        elif all(any(word in line for word in DOWN_WORDS) for line in members):
            verdict = "no etcd member answers"
        else:
            verdict = "etcd could not serve the request"
        return (
            f"cannot {doing} for cluster {self.cluster}: {verdict}. Members: {'; '.join(members)}. "
            f"Without the team lock, drengine cannot make sure that nobody else is recovering {self.cluster} "
            f"from another machine right now. {self._break_glass()}"
        )

    def _break_glass(self) -> str:
        return (
            f"Bring etcd back (most of its members must run), or, if you are sure nobody else is recovering "
            f"{self.cluster}, break glass: rerun with --lock local --reason \"...\" (journaled as a dangerous gate; "
            f"only this machine's lock is taken)"
        )

    def _txn(self, compare: dict[str, Any], value: str, lease: int) -> Any:
        from etcd3gw.utils import _encode

        key = _encode(self.lock_key)
        txn = {
            "compare": [{"key": key, "result": "EQUAL", **compare}],
            "success": [{"request_put": {"key": key, "value": _encode(value), "lease": lease}}],
            "failure": [{"request_range": {"key": key}}],
        }
        return self.call(lambda c: c.transaction(txn), "take the team lock")

    def _revoke(self, lease: int) -> None:
        from etcd3gw import exceptions
        from etcd3gw.lease import Lease

        try:
            self.gateway.call(lambda c: Lease(lease, c).revoke())
        except (Unreachable, exceptions.Etcd3Exception):
            pass  # it expires by itself after lease_ttl seconds

    # -- the lock ---------------------------------------------------------------------------
    def acquire(self, me: Holder, break_lock: bool = False) -> EtcdHeld:
        sent = time.monotonic()
        lease = self.call(lambda c: c.lease(ttl=self.settings.lease_ttl), "take the team lock").id
        mine = me.model_copy(update={"lease": lease})
        value = mine.model_dump_json()
        for _ in range(TRIES):
            answer = self._txn({"target": "CREATE", "create_revision": 0}, value, lease)
            if answer.get("succeeded"):
                return self._held(mine, sent)
            kv = _kv(answer)
            if kv is None:
                continue  # the key expired between the two: try again
            current = _holder(kv)
            if current.lease == lease:  # an earlier try that timed out had taken effect
                return self._held(mine, sent)
            if not break_lock:
                self._revoke(lease)
                raise LockHeld(self._held_message(current))
            broken = self._txn({"target": "MOD", "mod_revision": kv["mod_revision"]}, value, lease)
            if not broken.get("succeeded"):
                self._revoke(lease)
                now = _kv(broken)
                raise LockHeld(
                    f"cluster {self.cluster}'s lock changed hands while --break-lock was taking it: it is now held by "
                    f"{_holder(now).describe() if now else 'nobody'}. Look at that run before breaking its lock"
                )
            self._leave_break_notice(current.lease, mine)
            self._revoke(current.lease)  # the broken run finds its lease gone at its next look
            return self._held(mine, sent, replaced=current)
        self._revoke(lease)
        raise LockHeld(f"the lock key {self.lock_key} kept changing while drengine tried to take it; try again")

    def _break_notice_key(self, lease: int) -> str:
        return f"{self.lock_key}-broken/{lease:x}"

    def _leave_break_notice(self, broken_lease: int, breaker: Holder) -> None:
        """Tell the broken run who broke its lock, even after the breaker has finished (best effort)."""
        from etcd3gw import exceptions

        key = self._break_notice_key(broken_lease)
        try:
            notice = self.gateway.call(lambda c: c.lease(ttl=BREAK_NOTICE_SECONDS))
            self.gateway.call(lambda c: c.put(key, breaker.model_dump_json(), lease=notice))
        except (Unreachable, exceptions.Etcd3Exception):
            pass

    def breaker_of(self, gateway: Gateway, lease: int) -> Holder | None:
        """Who broke the lock held under `lease`, if someone did."""
        values = gateway.call(lambda c: c.get(self._break_notice_key(lease)))
        try:
            return Holder.model_validate_json(values[0]) if values else None
        except (ValueError, ValidationError):
            return None

    def _held(self, mine: Holder, sent: float, replaced: Holder | None = None) -> EtcdHeld:
        notes = []
        try:
            for run in self.runs():
                if not run.finished and run.run_id != mine.run_id and (replaced is None or run.run_id != replaced.run_id):
                    notes.append(
                        f"run {run.run_id} ({run.user}@{run.host}, runbook {run.runbook}) was interrupted at step "
                        f"{run.step or '(before its first step)'}: its lease expired; its journal is in {run.run_dir} "
                        f"on {run.host}"
                    )
        except LockUnavailable:
            pass  # the lock is ours; the registry is informative
        return EtcdHeld(self, mine, sent, replaced, notes)

    def _held_message(self, current: Holder) -> str:
        from etcd3gw import exceptions
        from etcd3gw.lease import Lease

        try:
            ttl = self.gateway.call(lambda c: Lease(current.lease, c).ttl())
        except (Unreachable, exceptions.Etcd3Exception, KeyError):
            ttl = 0  # only a detail of the message
        left = f"; if it has stopped, its lease runs out in {ttl} s" if ttl > 0 else ""
        return (
            f"cluster {self.cluster} is locked on etcd by {current.describe()}: its lease is kept alive, so it is "
            f"running, or stopped less than {self.settings.lease_ttl} s ago{left}. Two recoveries at once on one "
            f"cluster can undo each other's steps. Wait for it to finish (its journal is in {current.run_dir} on "
            f"{current.host}), or if you are sure it must not go on, rerun with --break-lock (journaled; that run "
            f"stops at its next step boundary)"
        )

    def holder(self) -> Holder | None:
        from etcd3gw.utils import _encode

        answer = self.call(lambda c: c.post(c.get_url("/kv/range"), json={"key": _encode(self.lock_key)}), "read the lock")
        kvs = answer.get("kvs") or []
        return _holder(kvs[0]) if kvs else None

    def runs(self) -> list[RunState]:
        found = []
        for value, _meta in self.call(lambda c: c.get_prefix(self.runs_prefix), "read the run registry"):
            try:
                found.append(RunState.model_validate_json(value))
            except (ValueError, ValidationError):
                continue
        return found

    def put_run(self, gateway: Gateway, state: RunState) -> None:
        """Publish one run's record; a finished run's record expires after a month."""
        from etcd3gw.lease import Lease

        key = f"{self.runs_prefix}{state.run_id}"
        lease: Lease | None = None
        if state.finished and not state.resumable:
            lease = gateway.call(lambda c: c.lease(ttl=FINISHED_KEPT_SECONDS))
        gateway.call(lambda c: c.put(key, state.model_dump_json(), lease=lease))


class EtcdHeld(HeldLock):
    """The lock while this run holds it: a thread renews the lease, checks that the key is still
    ours, and publishes the run's state; `lost()` is what the engine asks between steps."""

    backend = "etcd"

    def __init__(self, lock: EtcdLock, holder: Holder, sent: float, replaced: Holder | None, notes: list[str]) -> None:
        self.lock = lock
        self.settings = lock.settings
        self.holder = holder
        self.replaced = replaced
        self.replaced_alive = None
        self.where = lock.where
        self.notes = notes
        self._confirmed_at = sent  # when the last confirmed renewal was sent: the lease outlives it by lease_ttl
        self._lost: str | None = None
        self._last_error = ""
        self._pending: RunState | None = None
        self._mutex = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._released = False
        self._gateway = Gateway(lock.settings)  # the thread's own connections
        self._thread = threading.Thread(target=self._keep_alive, name=f"etcd-lease-{lock.cluster}", daemon=True)
        self._thread.start()

    def lost(self) -> str | None:
        with self._mutex:
            reachable = not self._last_error
        if reachable and not self._released:
            # Look now rather than trust the last renewal: a lock broken a second ago must stop the run
            # at this boundary. With etcd unreachable, only the time since the last renewal can tell.
            self._look(self.lock.gateway)
        with self._mutex:
            if self._lost is not None:
                return self._lost
            silent = time.monotonic() - self._confirmed_at
            error = self._last_error
        if silent >= self.settings.lease_ttl:
            return (f"etcd has not confirmed the lease for {silent:.0f} s, longer than its {self.settings.lease_ttl} s "
                    f"lifetime ({error or 'no answer'}), so it may have expired and another run may hold the lock. "
                    f"If etcd itself is down, break glass when you resume: add --lock local --reason \"...\"")
        return None

    def _look(self, gateway: Gateway) -> None:
        """Read the lock key: gone, or held under another lease, means the lock is lost."""
        from etcd3gw import exceptions
        from etcd3gw.utils import _encode

        try:
            answer = gateway.call(lambda c: c.post(c.get_url("/kv/range"), json={"key": _encode(self.lock.lock_key)}))
        except (Unreachable, exceptions.Etcd3Exception):
            return
        self._judge(gateway, answer, ttl=1)

    def _judge(self, gateway: Gateway, answer: Any, ttl: int) -> bool:
        """Whether the lock key (a range answer) is still ours; records why not."""
        from etcd3gw import exceptions

        kvs = answer.get("kvs") or []
        current = _holder(kvs[0]) if kvs else None
        if current is not None and current.lease == self.holder.lease and ttl > 0:
            return True
        try:
            breaker = self.lock.breaker_of(gateway, self.holder.lease)
        except (Unreachable, exceptions.Etcd3Exception):
            breaker = None
        if breaker is not None:
            self._set_lost(f"--break-lock gave it to {breaker.describe()}")
        elif current is not None and current.lease != self.holder.lease:
            self._set_lost(f"it is now held by {current.describe()}")
        else:
            self._set_lost(f"its etcd lease expired (etcd heard nothing from this run for {self.settings.lease_ttl} s)")
        return False

    def publish(self, state: RunState) -> None:
        with self._mutex:
            self._pending = state
        self._wake.set()

    # -- the keep-alive thread --------------------------------------------------------------
    def _keep_alive(self) -> None:
        interval = self.settings.lease_ttl / RENEWALS_PER_TTL
        due = time.monotonic() + interval
        while not self._stopping.is_set():
            self._wake.wait(max(0.0, due - time.monotonic()))
            self._wake.clear()
            if self._stopping.is_set():
                break
            if time.monotonic() >= due:
                with self._mutex:
                    renewing = self._lost is None
                if renewing:
                    self._renew()
                due = time.monotonic() + interval
            self._publish_pending(self._gateway)

    def _renew(self) -> None:
        from etcd3gw import exceptions
        from etcd3gw.lease import Lease

        sent = time.monotonic()
        try:
            ttl = self._gateway.call(lambda c: Lease(self.holder.lease, c).refresh())
            from etcd3gw.utils import _encode

            answer = self._gateway.call(lambda c: c.post(c.get_url("/kv/range"), json={"key": _encode(self.lock.lock_key)}))
        except Unreachable as exc:
            with self._mutex:
                self._last_error = "; ".join(exc.failures)
            return
        except exceptions.Etcd3Exception as exc:
            with self._mutex:
                self._last_error = _error_text(exc.detail_text) or str(exc)
            return
        if self._judge(self._gateway, answer, ttl):
            with self._mutex:
                self._confirmed_at = sent
                self._last_error = ""

    def _set_lost(self, why: str) -> None:
        with self._mutex:
            if self._lost is None:
                self._lost = why

    def _publish_pending(self, gateway: Gateway) -> None:
        from etcd3gw import exceptions

        with self._mutex:
            state, self._pending = self._pending, None
        if state is None:
            return
        try:
            self.lock.put_run(gateway, state)
        except (Unreachable, exceptions.Etcd3Exception):
            pass  # the registry is informative: an unreachable etcd must not stop a recovery

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._stopping.set()
        self._wake.set()
        self._thread.join(self.settings.timeout * len(self.settings.endpoints) * 2 + 1)
        self._publish_pending(self.lock.gateway)
        # Revoking our own lease deletes only the keys still attached to it: the lock key if it is
        # still ours, nothing if a breaker has put it under its own lease.
        self.lock._revoke(self.holder.lease)
