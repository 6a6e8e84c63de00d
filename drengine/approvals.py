"""The two-person rule: a gate the inventory's `approvals:` policy gives to several people waits,
after the first person's answer, for others to approve it with `drengine approve RUN_ID` from
any terminal or machine, through the run registry beside the cluster's lock (drengine/lock/store.py).

Who is a person (`Identity`): the OS user (the account of the process's real user id; under
sudo as root, the SUDO_USER who ran sudo), the host name, and the name in $DRENGINE_OPERATOR
when the site sets one. Two approvals come from the same person when their names are equal,
or when user and host are equal and the names do not differ. The same person never counts
twice: the approver is refused, and the waiting run checks again before it counts anything.

An approval approves one request: one gate, asked once, with one decision (what the step will
do and the risks it carries). A re-observation that changes the decision asks the gate again:
a new request, and the approvals of the old one no longer count (journaled). A run that stops
withdraws its request; when resumed, the gate is asked, and approved by everyone, again.

`--alone --reason` (break glass) lets one person pass such a gate: journaled, notified and
flagged in the report. Flags (`--yes --accept-data-loss`) only ever give the first approval.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from drengine.errors import DrengineError, InputError, OperatorStop
from drengine.journal import Event, JournalWriter, read_entries
from drengine.steps import GateLevel

if TYPE_CHECKING:
    from drengine.gates import GateAnswer, GateRequest
    from drengine.inventory import Approvals, Inventory
    from drengine.lock.store import RegistryStore

IDENTITY_ENV = "DRENGINE_OPERATOR"
POLL_SECONDS = 0.5
TWO_PERSON = "two-person"  # the start of the policy name of a gate answered by several people
ALONE = "alone"


class Identity(BaseModel):
    """One person as drengine can tell people apart."""

    model_config = ConfigDict(frozen=True)

    user: str
    host: str
    name: str = ""

    def words(self) -> str:
        return f"{self.name} ({self.user}@{self.host})" if self.name else f"{self.user}@{self.host}"

    def same_person(self, other: Identity) -> bool:
        if self.name and other.name:
            return self.name == other.name
        return (self.user, self.host) == (other.user, other.host)

    def digest(self) -> str:
        return hashlib.sha256(f"{self.user}\n{self.host}\n{self.name}".encode()).hexdigest()[:16]


def identity_now() -> Identity:
    """This process's person: the account of its real user id (not $USER, which anyone can set);
    as root, the SUDO_USER who ran sudo if there is one; plus $DRENGINE_OPERATOR when set."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    sudo = os.environ.get("SUDO_USER", "").strip()
    if uid == 0 and sudo:
        user = sudo
    return Identity(user=user, host=socket.gethostname(), name=os.environ.get(IDENTITY_ENV, "").strip())


class Approval(BaseModel):
    """One person's approval of one request, as written to the registry and journaled."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    request_id: str
    decision: str
    who: Identity
    reason: str = ""
    when: float = 0.0
    via: str = "drengine approve"


class ApprovalRequest(BaseModel):
    """What the waiting run publishes: everything its gate showed, for the others to judge."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    request_id: str
    decision: str
    run_id: str
    cluster: str
    runbook: str
    step: str
    title: str
    level: str
    summary: str
    reason: str = ""
    risks: list[str] = []
    statements: list[str] = []
    evidence: list[str] = []
    change: str = ""
    override: bool = False
    needed: int
    first: Approval
    asked_at: float
    run_dir: str = ""
    pid: int = 0
    run_host: str = ""


def request_key(run_id: str) -> str:
    return f"approvals/{run_id}/request"


def given_prefix(run_id: str) -> str:
    return f"approvals/{run_id}/given/"


def run_prefix(run_id: str) -> str:
    return f"approvals/{run_id}/"


def decision_of(request: GateRequest) -> str:
    """What an approval approves: the step, the gate's level and the decision in words with its
    risks (as the engine compares decisions: exact positions may move without it changing)."""
    p = request.proposal
    text = json.dumps([request.step, int(request.level), request.is_override, p.summary, sorted(p.risks)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def approve_command(run_id: str, inventory: str) -> str:
    return f"drengine approve {run_id} -i {inventory}"


@dataclass
class TwoPersonRule:
    """The engine's side: after the first person's answer, wait for the others (or break glass)."""

    journal: JournalWriter
    store: RegistryStore
    policy: Approvals
    run_id: str
    cluster: str
    runbook: str
    inventory: str
    alone_reason: str | None = None

    def needed(self, request: GateRequest) -> int:
        return self.policy.needed(request.level is GateLevel.DANGEROUS)

    def approve(self, request: GateRequest, first: GateAnswer) -> GateAnswer:
        """The gate's answer once enough different people approved; raises OperatorStop when the
        wait ends unanswered (the run stops, resumable). Ctrl-C stops it the same way."""
        from drengine.gates import Answer, GateAnswer

        needed = self.needed(request)
        if needed <= 1:
            return first
        me = identity_now()
        decision = decision_of(request)
        request_id = secrets.token_hex(4)
        mine = Approval(request_id=request_id, decision=decision, who=me, reason=first.reason, when=first.when,
                        via=f"{first.policy} policy")
        self._given(request.step, mine, 1, needed)
        if self.alone_reason is not None:
            return self._alone(request, first, me, needed)
        published = self._publish(request, mine, needed)
        try:
            approvals = self._wait(published)
        finally:
            self._withdraw()
        return GateAnswer(Answer.PROCEED, " and ".join(a.who.words() for a in approvals),
                          f"{TWO_PERSON} ({first.policy} + drengine approve)",
                          "; ".join(f"{a.who.words()}: {a.reason or 'no reason given'}" for a in approvals))

    # -- the steps of the wait ------------------------------------------------------------------
    def _given(self, step: str, approval: Approval, number: int, needed: int) -> None:
        self.journal.append(Event.APPROVAL_GIVEN, step=step, request_id=approval.request_id, number=number,
                            needed=needed, who=approval.who.words(), user=approval.who.user, host=approval.who.host,
                            name=approval.who.name, reason=approval.reason, when=approval.when, via=approval.via)

    def _alone(self, request: GateRequest, first: GateAnswer, me: Identity, needed: int) -> GateAnswer:
        from drengine.gates import Answer, GateAnswer

        reason = self.alone_reason or ""
        self.journal.append(
            Event.APPROVAL_ALONE, step=request.step, who=me.words(), reason=reason, needed=needed,
            text=f"BREAK GLASS: {me.words()} passed the {request.level.name.lower()} gate at step {request.step} alone "
                 f"(--alone); the inventory asks {needed} different people to approve it. Reason: {reason}",
        )
        return GateAnswer(Answer.PROCEED, me.words(), f"{ALONE} (two-person rule broken by --alone)",
                          f"--alone: {reason}" + (f"; {first.reason}" if first.reason and first.reason != reason else ""))

    def _publish(self, request: GateRequest, first: Approval, needed: int) -> ApprovalRequest:
        p = request.proposal
        published = ApprovalRequest(
            request_id=first.request_id, decision=first.decision, run_id=self.run_id, cluster=self.cluster,
            runbook=self.runbook, step=request.step, title=request.title, level=request.level.name.lower(),
            summary=p.summary, reason=p.reason, risks=list(p.risks), statements=[s.show() for s in p.statements],
            evidence=[*self._evidence(), *p.evidence, *request.details], change=request.change,
            override=request.is_override, needed=needed, first=first, asked_at=time.time(),
            run_dir=str(self.journal.run_dir), pid=os.getpid(), run_host=socket.gethostname(),
        )
        command = approve_command(self.run_id, self.inventory)
        try:
            self.store.delete_under(run_prefix(self.run_id))  # a request of before a stop or a changed decision
            self.store.put(request_key(self.run_id), published.model_dump_json(), shared=True)
        except DrengineError as exc:
            raise OperatorStop(
                f"step {request.step} needs {needed} different people to approve it, and the request for the others "
                f"could not be published: {exc}. Nothing further was changed. Resume the run once the registry "
                f"answers, or break glass with --alone --reason \"...\" (journaled and notified)") from None
        self.journal.append(
            Event.APPROVAL_REQUESTED, step=request.step, request_id=published.request_id, needed=needed,
            have=[first.who.words()], command=command, registry=self.store.where, run_id=self.run_id,
            summary=p.summary, level=published.level, wait=self.policy.wait,
            text=f"step {request.step} needs {needed} different people; approved by {first.who.words()}; "
                 f"waiting for {needed - 1} more: `{command}` (from another terminal or machine; Ctrl-C stops the run, "
                 f"resumable)",
        )
        return published

    def _evidence(self) -> list[str]:
        """The evidence per member the run's steps recorded, as the gate's `d` shows it."""
        found: dict[str, list[str]] = {}
        try:
            for entry in read_entries(self.journal.path):
                if entry.type is Event.STEP_FINISHED and entry.data.get("evidence"):
                    found[str(entry.data.get("step"))] = [str(line) for line in entry.data["evidence"]]
        except DrengineError:
            return []
        return [f"from step {step}: {line}" for step, lines in found.items() for line in lines]

    def _wait(self, published: ApprovalRequest) -> list[Approval]:
        approvals = [published.first]
        seen: set[str] = set()
        deadline = None if self.policy.wait is None else time.monotonic() + self.policy.wait
        try:
            while len(approvals) < published.needed:
                for key, text in self._read_given(published):
                    if key in seen:
                        continue
                    seen.add(key)
                    self._consider(published, text, approvals)
                if len(approvals) >= published.needed:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise OperatorStop(
                        f"step {published.step} waited {self.policy.wait:g} s (the inventory's approvals: wait) for "
                        f"{published.needed - len(approvals)} more approval(s) and got none; nothing further was "
                        f"changed. Resume the run when the other people are there (the gate asks again), or break "
                        f"glass with --alone --reason \"...\"")
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self.journal.append(Event.NOTE, step=published.step,
                                text=f"the wait for approvals was interrupted (Ctrl-C); the request "
                                     f"{published.request_id} is withdrawn, and the gate asks again on resume")
            raise
        return approvals

    def _read_given(self, published: ApprovalRequest) -> list[tuple[str, str]]:
        try:
            return sorted(self.store.under(given_prefix(self.run_id)).items())
        except DrengineError:
            return []  # the registry is briefly unreachable: look again at the next poll

    def _consider(self, published: ApprovalRequest, text: str, approvals: list[Approval]) -> None:
        try:
            given = Approval.model_validate_json(text)
        except (ValidationError, ValueError):
            return
        if given.request_id != published.request_id or given.decision != published.decision:
            return  # an approval of an earlier request (before a stop or a changed decision)
        same = next((a for a in approvals if a.who.same_person(given.who)), None)
        if same is not None:
            self.journal.append(
                Event.APPROVAL_REFUSED, step=published.step, request_id=published.request_id, who=given.who.words(),
                why=f"{given.who.words()} is the same person as {same.who.words()}, who already approved; "
                    f"the same person never counts twice")
            return
        approvals.append(given)
        self._given(published.step, given, len(approvals), published.needed)

    def _withdraw(self) -> None:
        try:
            self.store.delete_under(run_prefix(self.run_id))
        except DrengineError:
            pass  # an approval of a withdrawn request names a request nobody waits for: it is ignored


def invalidated_text(who: str, change: str) -> str:
    return (f"the approvals of {who} no longer count: the decision changed when the cluster was observed again "
            f"({change}); the gate asks again, and every person approves again")


# -- the approver's side: `drengine approve RUN_ID` ------------------------------------------------

@dataclass(frozen=True)
class Found:
    request: ApprovalRequest
    store: RegistryStore
    approvals: list[Approval]


def find_request(inventory: Inventory, run_id: str, cluster: str | None = None, lock_dir: Path | None = None) -> Found:
    """The approval request run `run_id` waits on, in the registry of its cluster."""
    from drengine.lock.store import open_store

    names = [inventory.cluster(cluster).name] if cluster else sorted(inventory.clusters)
    problems: list[str] = []
    for name in names:
        store = open_store(inventory.lock_for(inventory.clusters[name]), name, lock_dir, patience=0.0)
        try:
            text = store.get(request_key(run_id))
            given = store.under(given_prefix(run_id)) if text is not None else {}
        except DrengineError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if text is None:
            continue
        request = ApprovalRequest.model_validate_json(text)
        approvals = []
        for raw in given.values():
            try:
                approval = Approval.model_validate_json(raw)
            except (ValidationError, ValueError):
                continue
            if approval.request_id == request.request_id:
                approvals.append(approval)
        return Found(request, store, approvals)
    where = f"cluster {cluster}" if cluster else f"any cluster of {inventory.path}"
    unread = f" (registries that could not be read: {'; '.join(problems)})" if problems else ""
    raise InputError(f"run {run_id} is not waiting for an approval in the run registry of {where}{unread}. "
                     f"It may have gone on, stopped (a stopped run asks again when resumed) or never asked; "
                     f"see `drengine runs -i {inventory.path}`")


def check_waiting(inventory: Inventory, found: Found, lock_dir: Path | None = None) -> None:
    """The run still holds its cluster's lock: an approval for a run that died approves nothing."""
    from drengine.lock import open_lock

    request = found.request
    holder = open_lock(inventory.lock_for(inventory.cluster(request.cluster)), request.cluster, lock_dir).holder()
    if holder is None or holder.run_id != request.run_id:
        raise InputError(f"run {request.run_id} asked for an approval at step {request.step} but no longer runs (it "
                         f"does not hold the lock of cluster {request.cluster}); its request is stale. When it is "
                         f"resumed, its gate asks again")


def check_not_approved_by(found: Found, me: Identity) -> None:
    """The same person cannot approve twice: not the one who answered the gate, not an earlier approver."""
    for earlier in [found.request.first, *found.approvals]:
        if earlier.who.same_person(me):
            raise InputError(
                f"you ({me.words()}) already count as {earlier.who.words()}, who approved step {found.request.step} of "
                f"run {found.request.run_id} ({earlier.via}); the two-person rule needs a different person "
                f"(another OS user or host, or another ${IDENTITY_ENV} where the site sets it)")


def record_approval(found: Found, me: Identity, reason: str) -> Approval:
    """Write the approval, if the request is still the one shown (not withdrawn or asked again meanwhile)."""
    store, shown = found.store, found.request
    text = store.get(request_key(shown.run_id))
    now = ApprovalRequest.model_validate_json(text) if text is not None else None
    if now is None or now.request_id != shown.request_id or now.decision != shown.decision:
        raise OperatorStop(
            f"run {shown.run_id} no longer waits on what you were shown (step {shown.step}: {shown.summary}): "
            + ("it stopped waiting" if now is None else f"it now asks about step {now.step}: {now.summary}")
            + "; nothing was approved. Run `drengine approve` again to see what it asks now", who=me.words())
    approval = Approval(request_id=shown.request_id, decision=shown.decision, who=me, reason=reason, when=time.time())
    store.put(f"{given_prefix(shown.run_id)}{shown.request_id}-{me.digest()}", approval.model_dump_json(), shared=True)
    return approval
