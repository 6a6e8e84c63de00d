"""The run journal: the one writer and reader of `journal.jsonl`.

Every event is one JSON line, written and fsynced before the engine moves on. Lines are
hash-chained: each carries its sequence number, the hash of the previous line and its own
hash over both, so an edited, inserted, removed or reordered line breaks the chain. The
last (seq, hash) is also kept in `journal.head`, so that cutting lines off the end is
detected too. Secrets are redacted before anything reaches the disk.

Durability: every append is made to last by the run's disk (journal, head, and the directory
once) before the engine moves on: an fsync on a real disk; nothing on the explorer's scratch
disk (drengine/machine.py), whose runs live on a tmpfs thrown away after each scenario. The
chain, the head record and every byte written are the same on both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from drengine.errors import InputError, JournalCorrupt
from drengine.machine import DISK, Disk
from drengine.redact import REDACTOR

JOURNAL_FILE = "journal.jsonl"
HEAD_FILE = "journal.head"
GENESIS = "0" * 64


class Event(str, Enum):
    RUN_STARTED = "run_started"
    RUN_RESUMED = "run_resumed"
    LOCK_TAKEN = "lock_taken"
    LOCK_BROKEN = "lock_broken"
    LOCK_LOST = "lock_lost"
    STEP_STARTED = "step_started"
    STATEMENT_SENT = "statement_sent"
    STEP_FINISHED = "step_finished"
    STEP_RECONCILED = "step_reconciled"
    STEP_INTERRUPTED = "step_interrupted"
    DECISION_CHANGED = "decision_changed"
    OBSERVED_AGAIN = "observed_again"
    GOAL_CHECKED = "goal_checked"
    GATE_ASKED = "gate_asked"
    GATE_ANSWERED = "gate_answered"
    OVERRIDE = "override"
    PLAN_STEP = "plan_step"
    MEASUREMENT = "measurement"
    FAULT_INJECTED = "fault_injected"  # drills: the fault, on which members, when
    DRILL_VERDICT = "drill_verdict"  # drills: runbook outcome and objectives, judged before run_finished
    NOTE = "note"
    SITE_CLUSTER = "site_cluster"  # a site run: one cluster's turn (waiting, started, finished, ...)
    CHANGE_OPENED = "change_opened"  # the change ledger (drengine/ledger.py): a step left something changed
    CHANGE_CLOSED = "change_closed"  # ... and a step (or `drengine changes close`) undid it
    # The two-person rule (drengine/approvals.py): each approval of a gate that needs several people,
    # the request the run waits on, one refused (same person), approvals a changed decision voided,
    # and break glass when alone (`--alone --reason`).
    APPROVAL_GIVEN = "approval_given"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_REFUSED = "approval_refused"
    APPROVALS_INVALIDATED = "approvals_invalidated"
    APPROVAL_ALONE = "approval_alone"
    RUN_FINISHED = "run_finished"


class Entry(NamedTuple):
    """One journal event as written and read back (a named tuple: built for every line of every
    journal read, and a frozen dataclass costs five setattr calls each)."""

    seq: int
    ts: float
    type: Event
    data: dict[str, Any]
    line: int


def _digest(prev: str, body: str) -> str:
    return hashlib.sha256((prev + "\n" + body).encode()).hexdigest()


# json.dumps(..., sort_keys=True, separators=(",", ":")), built once.
_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _encoder_of_plain_data() -> Callable[[dict[str, Any]], str]:
    """`_encode` for the plain data `_jsonable` gives (no cycles, nothing but JSON's own types):
    the same text, from json's C encoder called directly (without the per-call setup of
    `JSONEncoder.encode`), when there is one."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _encode
    encoder = make(None, None, json.encoder.encode_basestring_ascii, None, ":", ",", True, False, True)
    return lambda data: "".join(encoder(data, 0))


_encode_data = _encoder_of_plain_data()
# json.loads for a text the writer wrote (no surrounding blanks): the value and where it ends.
_decode_at = json.JSONDecoder().raw_decode


def _body(seq: int, ts: float, kind: str, data: dict[str, Any]) -> str:
    """What is hashed: {"data","seq","ts","type"}, keys sorted, compact."""
    return _body_of(_encode(data), _encode(seq), _encode(ts), _encode(kind))


def _body_of(data: str, seq: str, ts: str, kind: str) -> str:
    # The text json.dumps gives for the whole object (keys in sorted order), from its fields
    # already encoded: an append encodes the data once, for the hash and for the line.
    return f'{{"data":{data},"seq":{seq},"ts":{ts},"type":{kind}}}'


def _line_of(data: str, digest: str, prev: str, seq: str, ts: str, kind: str) -> str:
    """What is written: the body's fields and the chain's (hex digests), keys sorted, compact."""
    return f'{{"data":{data},"hash":"{digest}","prev":"{prev}","seq":{seq},"ts":{ts},"type":{kind}}}'


class JournalClosed(RuntimeError):
    """Something tried to journal after the run finished: a bug that must not pass silently."""


class JournalWriter:
    """Appends events to a run directory's journal, one at a time (a step's worker thread
    journals the statements it sends while the engine waits for it). After `run_finished`
    the journal takes nothing more: nothing of a run may happen after the run has ended."""

    def __init__(self, run_dir: Path, clock: Callable[[], float] = time.time, disk: Disk = DISK,
                 follows: Chain | None = None) -> None:
        """`follows`: the journal as the caller has just verified it (a resume); it is not read
        again when it still ends there, else it is verified here as any journal written to."""
        self.run_dir = run_dir
        self.disk = disk
        self.path = run_dir / JOURNAL_FILE
        self.head_path = run_dir / HEAD_FILE
        self._clock = clock
        self.after_append: Callable[[Entry], None] | None = None
        run_dir.mkdir(parents=True, exist_ok=True)
        if follows is not None and follows.entries and _still_ends(self.path, follows):
            self._seq, self._prev = follows.entries[-1].seq, follows.last
        else:
            entries, last = _checked(self.path) if self.path.exists() else ([], GENESIS)
            self._seq = entries[-1].seq if entries else 0
            self._prev = last
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._head_fd = -1  # opened with the first append: a head record names an event
        self._lock = threading.Lock()
        self.finished = False
        disk.sync_dir(run_dir)

    def append(self, event: Event, /, **data: Any) -> Entry:
        with self._lock:
            if self.finished:
                raise JournalClosed(f"{self.path}: the run has finished; refusing to journal {event.value} after it")
            entry = self._append(event, data)
            if event is Event.RUN_FINISHED:
                self.finished = True
        if self.after_append is not None:
            self.after_append(entry)
        return entry

    def _append(self, event: Event, data: dict[str, Any]) -> Entry:
        self._seq += 1
        ts = round(self._clock(), 6)
        clean = REDACTOR.deep(_jsonable(data))
        # json's own encodings of an int, a float (float.__repr__) and an event name ([a-z_]).
        data_json, seq, when, kind = _encode_data(clean), str(self._seq), float.__repr__(ts), f'"{event.value}"'
        digest = _digest(self._prev, _body_of(data_json, seq, when, kind))
        line = _line_of(data_json, digest, self._prev, seq, when, kind)
        os.write(self._fd, (line + "\n").encode())
        self.disk.sync(self._fd)
        self._prev = digest
        if self._head_fd < 0:
            self._head_fd = os.open(self.head_path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.pwrite(self._head_fd, f"{self._seq:012d} {digest}\n".encode(), 0)
        self.disk.sync(self._head_fd)
        return Entry(self._seq, ts, event, clean, self._seq)

    def head(self) -> tuple[int, str]:
        """The last event written: its sequence number and hash (what `journal.head` holds)."""
        with self._lock:
            return self._seq, self._prev

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._head_fd >= 0:
            os.close(self._head_fd)
            self._head_fd = -1


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so what is hashed is exactly what is written. Data made only of
    what JSON gives back unchanged (dicts with str keys, lists, str, int, float, bool, None) is
    copied as it is, without the round trip; anything else takes it."""
    try:
        return _plain(value)
    except (_NotPlain, RecursionError):
        return json.loads(json.dumps(value, default=_default))


class _NotPlain(Exception):
    pass


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        out = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NotPlain
            # Strings and integers (most values) are taken as they are, without a call.
            out[key] = item if type(item) is str or type(item) is int else _plain(item)
        return out
    if kind is list:
        return [item if type(item) is str else _plain(item) for item in value]
    raise _NotPlain


def _default(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot journal a {type(value).__name__}")


def cut_after(run_dir: Path, seq: int) -> None:
    """Leave the run directory as a SIGKILL right after event `seq` was journaled would: the
    lines after it gone, the head record naming it. The explorer kills the engine in-process
    (a listener raises at that event, the engine unwinds and may journal more): this puts the
    files back to what a real kill leaves behind, before the run is resumed."""
    path = run_dir / JOURNAL_FILE
    with open(path, encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    if not 1 <= seq <= len(lines):
        raise ValueError(f"{path}: cannot cut after event #{seq}; the journal holds {len(lines)} events")
    kept = lines[:seq]
    last = json.loads(kept[-1])
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(kept)
    (run_dir / HEAD_FILE).write_text(f"{int(last['seq']):012d} {last['hash']}\n")


def read_entries(path: Path) -> Iterator[Entry]:
    """Parse journal lines without checking the chain (use `verify` for that)."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
                yield Entry(int(raw["seq"]), float(raw["ts"]), Event(raw["type"]), dict(raw["data"]), number)
            except (ValueError, KeyError, TypeError) as exc:
                raise JournalCorrupt(f"{path}:{number}: not a journal event ({exc}); the journal was damaged") from None


def resolve_journal(path: str | Path) -> Path:
    """Accept a run directory or the journal file itself."""
    p = Path(path)
    if p.is_dir():
        p = p / JOURNAL_FILE
    if not p.is_file():
        raise InputError(f"{path}: no journal here; expected a run directory holding {JOURNAL_FILE} or the file itself")
    return p


def verify(path: str | Path) -> int:
    """Check the whole chain; return the number of events or raise JournalCorrupt naming the first bad line."""
    return len(verified_entries(path))


def verified_entries(path: str | Path) -> list[Entry]:
    """Every event of a journal whose whole chain checks out (one pass: read, check, parse);
    raise JournalCorrupt naming the first bad line."""
    return _checked(resolve_journal(path))[0]


class Chain(NamedTuple):
    """A verified journal: its events and the hash of its last line."""

    entries: list[Entry]
    last: str


def verified_chain(path: str | Path) -> Chain:
    """As `verified_entries`, with the last hash (for a writer that continues the journal)."""
    return Chain(*_checked(resolve_journal(path)))


def _still_ends(journal: Path, chain: Chain) -> bool:
    """Does the journal still end with the chain's last line, as its head record says? (Nothing
    was appended or cut since it was verified.)"""
    seq = chain.entries[-1].seq
    try:
        if (journal.parent / HEAD_FILE).read_text() != f"{seq:012d} {chain.last}\n":
            return False
        with open(journal, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 65536))
            tail = fh.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = tail.split("\n")
    if len(lines) < 2 or lines[-1] != "":
        return False
    cut = lines[-2].rfind(',"hash":"')
    found = _TAIL.fullmatch(lines[-2], cut + 1) if cut > 0 else None
    return found is not None and found.group(1) == chain.last and int(found.group(3)) == seq


# The end of a line as `_line_of` writes it, after its data: the chain and the body's other fields.
_TAIL = re.compile(r'"hash":"([0-9a-f]{64})","prev":"([0-9a-f]{64})","seq":([1-9][0-9]*),'
                   r'"ts":(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?),"type":"([a-z_]+)"}\n?')


_EVENTS: dict[str, Event] = {e.value: e for e in Event}


def _as_written(line: str, prev: str, expected_seq: int, number: int) -> tuple[Entry, str] | None:
    """The event of a line exactly as the writer writes it, following `prev`, when its hash
    checks out over the very text of its fields (the hash is over that text: an edit of any
    byte breaks it); else None, and the line is checked field by field (`_checked`), which
    also says what is wrong."""
    if not line.startswith('{"data":'):
        return None
    cut = line.rfind(',"hash":"')  # the data's own strings escape their quotes: this is the chain's
    tail = _TAIL.fullmatch(line, cut + 1) if cut > 0 else None
    if tail is None:
        return None
    stored_hash, stored_prev, seq, ts, kind = tail.groups()
    event = _EVENTS.get(kind)
    if stored_prev != prev or int(seq) != expected_seq or event is None:
        return None
    data_text = line[8:cut]  # after '{"data":'
    # _digest(prev, _body_of(data_text, seq, ts, kind)), written out
    body = f'{prev}\n{{"data":{data_text},"seq":{seq},"ts":{ts},"type":"{kind}"}}'
    if hashlib.sha256(body.encode()).hexdigest() != stored_hash:
        return None
    try:
        data, end = _decode_at(data_text)
    except ValueError:
        return None
    if end != len(data_text) or type(data) is not dict:
        return None
    return Entry(expected_seq, float(ts), event, data, number), stored_hash


def _checked(journal: Path) -> tuple[list[Entry], str]:
    """The events of a journal whose chain and head record check out, and the last hash."""
    prev = GENESIS
    expected_seq = 1
    entries: list[Entry] = []
    with open(journal, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            written = _as_written(line, prev, expected_seq, number)
            if written is not None:
                entries.append(written[0])
                prev = written[1]
                expected_seq += 1
                continue
            if not line.strip():
                raise JournalCorrupt(f"{journal}:{number}: empty line inserted; journals have no empty lines")
            try:
                raw = json.loads(line)
                seq, ts, kind, data = int(raw["seq"]), raw["ts"], str(raw["type"]), raw["data"]
                stored_prev, stored_hash = str(raw["prev"]), str(raw["hash"])
            except (ValueError, KeyError, TypeError):
                raise JournalCorrupt(f"{journal}:{number}: line is not a journal event (edited or damaged)") from None
            if seq != expected_seq:
                what = "removed" if seq > expected_seq else "inserted or reordered"
                raise JournalCorrupt(
                    f"{journal}:{number}: expected event #{expected_seq} but found #{seq}: a line was {what}"
                )
            if stored_prev != prev:
                raise JournalCorrupt(f"{journal}:{number}: chain broken: this line does not follow the previous one")
            if _digest(prev, _body(seq, ts, kind, data)) != stored_hash:
                raise JournalCorrupt(f"{journal}:{number}: content does not match its hash: the line was edited")
            try:
                entries.append(Entry(seq, float(ts), Event(kind), dict(data), number))
            except (ValueError, TypeError) as exc:
                raise JournalCorrupt(f"{journal}:{number}: not a journal event ({exc}); the journal was damaged") from None
            prev = stored_hash
            expected_seq += 1
    count = len(entries)
    head = journal.parent / HEAD_FILE
    if head.exists():
        try:
            head_seq_text, head_hash = head.read_text().split()
            head_seq = int(head_seq_text)
        except ValueError:
            raise JournalCorrupt(f"{head}:1: unreadable head record") from None
        if head_seq > count:
            raise JournalCorrupt(
                f"{journal}:{count + 1}: the journal ends at event #{count} but its head records #{head_seq}: "
                f"lines were removed from the end"
            )
        if head_seq == count and head_hash != prev:
            raise JournalCorrupt(f"{journal}:{count}: the last line does not match the head record: it was edited")
    return entries, prev
