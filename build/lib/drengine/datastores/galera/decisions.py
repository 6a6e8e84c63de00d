"""MariaDB Galera decisions, pure and without I/O: is a Primary component still alive (or do
two separate non-Primary groups stand, both sides of a partition)? Which node is the most
advanced, from running nodes or from what crashed nodes saved on disk? And the facts they hand
to the steps of `galera-bootstrap-survivor` (galera/actions.py).

Bootstrapping the wrong node loses every write the more advanced nodes had; bootstrapping
both sides of a partition makes two clusters whose data diverge. The decisions therefore
refuse while any node is Primary and while two separate non-Primary groups could each be
bootstrapped, and they name every node whose position could not be read as a risk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from drengine.datastores.galera.connector import GaleraView, NodeView
from drengine.steps import Fact, Refusal, fact

# -- facts -----------------------------------------------------------------------------------------


@fact
class DiskPosition(Fact):
    """Where a stopped node's data ends, read on its host."""

    name: str
    uuid: str = ""
    seqno: int = -1
    safe_to_bootstrap: bool = False
    source: str = ""  # grastate.dat, --wsrep-recover; empty when unknown
    running: bool = False  # the host says its mariadbd still runs (hung?): nothing was read
    error: str = ""

    @property
    def known(self) -> bool:
        return self.seqno >= 0 and not self.running and not self.error


@fact
class DiskPositions(Fact):
    positions: list[DiskPosition]


@fact
class Candidate(Fact):
    name: str
    uuid: str
    seqno: int
    source: str
    safe_to_bootstrap: bool = False


Branch = Literal["running", "all-down"]


@fact
class BootstrapDecision(Fact):
    branch: Branch
    chosen: str | None
    reason: str
    ranking: list[Candidate] = []
    risks: list[str] = []
    position: str = ""  # uuid:seqno of the chosen node
    safe_to_bootstrap: bool = False
    others: list[str] = []  # the members to bring back after the bootstrap
    refused: str = ""  # why nothing was chosen: see Block.kind


@fact
class PrimaryCheck(Fact):
    """What check_no_primary found; `blocked` stays set when the operator overrode the check."""

    blocked: str = ""  # Block.kind, or empty
    summary: str = ""


# -- pure decisions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A reason not to bootstrap anything, in the words of a refusal."""

    kind: str  # healthy, primary-alive, partition-primary, split
    summary: str
    observed: str
    expected: str
    why: str
    next_steps: str
    risk: str

    def refusal(self) -> Refusal:
        return Refusal(self.observed, self.expected, self.why, self.next_steps, self.risk)


def components(view: GaleraView) -> list[list[str]]:
    """Group the answering nodes by the component each one says it is in.

    A node's `wsrep_incoming_addresses` lists the client addresses of its component's
    members; where that cannot be matched to members, nodes whose component size equals
    the number of answering nodes are taken as one group, and any other shape as each
    node alone (the cautious reading: it can only add refusals).
    """
    up = [n for n in view.nodes if n.state == "up"]
    by_address = {f"{n.address}:{n.port}": n.name for n in view.nodes}
    groups: list[set[str]] = []
    for node in up:
        seen = {by_address[a] for a in node.incoming if a in by_address}
        if node.incoming and node.name in seen and len(seen) == len(node.incoming):
            members = seen & {n.name for n in up}
        elif node.cluster_size == len(up) and all(n.cluster_size == len(up) for n in up):
            members = {n.name for n in up}
        else:
            members = {node.name}
        members.add(node.name)
        for group in groups:
            if group & members:
                group |= members
                break
        else:
            groups.append(members)
    order = [n.name for n in view.nodes]
    return [sorted(g, key=order.index) for g in groups]


def names_of(nodes: list[NodeView]) -> str:
    return ", ".join(n.name for n in nodes)


def assess_primary(view: GaleraView, start_commands: dict[str, str] | None = None) -> Block | None:
    """Refuse while any node is Primary, and while two non-Primary groups could each be
    bootstrapped (both sides of a partition). `start_commands` (member -> the inventory's
    start command) lets the refusal say exactly how to restart the missing nodes."""
    primary = [n for n in view.nodes if n.is_primary]
    others_up = [n for n in view.nodes if n.state == "up" and not n.is_primary]
    missing = [n for n in view.nodes if n.state != "up"]
    if primary and not others_up:
        sizes = sorted({n.cluster_size for n in primary})
        if not missing:
            return Block(
                kind="healthy",
                summary=f"nothing to do: every node is in a Primary component ({names_of(primary)}, size {sizes})",
                observed=f"{names_of(primary)} report wsrep_cluster_status Primary, component size {sizes}",
                expected="no Primary component: the cluster lost quorum (every node non-Primary) or every node is down",
                why="the cluster is serving; bootstrapping a node of a healthy cluster splits it into two",
                next_steps="nothing to recover. If clients fail, look at them or at the load balancer, not at quorum",
                risk="a second Primary component: two clusters taking writes that never meet again",
            )
        return Block(
            kind="primary-alive",
            summary=f"a Primary component is alive ({names_of(primary)}); {names_of(missing)} "
                    f"{'is' if len(missing) == 1 else 'are'} not in it",
            observed=f"{names_of(primary)} report Primary (size {sizes}); " + "; ".join(n.describe() for n in missing),
            expected="no Primary component (quorum lost everywhere)",
            why="the cluster still has quorum and serves; the missing nodes only need to be restarted, and they "
                "rejoin the Primary component by themselves (IST or SST). Bootstrapping would make a second cluster",
            next_steps=f"start the missing node(s) normally ({_start_hint(missing, start_commands)}); "
                       f"nothing needs a bootstrap. Override only if you know the Primary component is lost",
            risk="a second Primary component next to the live one: the data written on each side diverges",
        )
    if primary and others_up:
        return Block(
            kind="partition-primary",
            summary=f"a partition: {names_of(primary)} {'is' if len(primary) == 1 else 'are'} Primary while "
                    f"{names_of(others_up)} {'is' if len(others_up) == 1 else 'are'} non-Primary",
            observed="; ".join(n.describe() for n in primary + others_up),
            expected="no Primary component anywhere before bootstrapping",
            why=f"{names_of(others_up)} cannot see the Primary component: a network partition (or a node stuck "
                f"joining). The Primary side keeps serving; bootstrapping the other side makes two clusters",
            next_steps=f"fix the network between the two sides; {names_of(others_up)} rejoin the Primary component by "
                       f"themselves. If they stay out, restart them normally. Override only if the Primary side is "
                       f"about to be fenced",
            risk="two Primary components: clients on each side write data the other never sees (split brain)",
        )
    groups = components(view)
    if len(groups) > 1:
        sides = " | ".join("{" + ", ".join(g) + "}" for g in groups)
        return Block(
            kind="split",
            summary=f"both sides of a partition are non-Primary and each could be bootstrapped: {sides}",
            observed=f"running nodes in separate components: {sides}; "
                     + "; ".join(n.describe() for n in view.nodes if n.state == "up"),
            expected="one group of running non-Primary nodes that see each other",
            why="bootstrapping one side while the other side can still be bootstrapped (by a person, a script or "
                "another drengine run) makes two clusters with diverging data; drengine does not pick a side",
            next_steps="decide which side survives; stop mariadbd on the other side (or fence it) and rerun, or fix "
                       "the network so the groups merge. Override only if the other side is already fenced",
            risk="if the other side is bootstrapped too, two clusters take writes that can never be merged",
        )
    return None


def _start_hint(nodes: list[NodeView], commands: dict[str, str] | None) -> str:
    if not commands:
        return "with the service's start command on their hosts"
    return "; ".join(f"on {n.name}: `{commands[n.name]}`" for n in nodes if n.name in commands)


def _rank_key(order: list[str]) -> Callable[[Candidate], tuple[int, int, int]]:
    def key(c: Candidate) -> tuple[int, int, int]:
        # Highest seqno first; on a tie the node Galera marked safe, then the inventory order.
        return (-c.seqno, 0 if c.safe_to_bootstrap else 1, order.index(c.name))

    return key


def _describe_ranking(best: Candidate, rest: list[Candidate], what: str) -> str:
    reason = f"{best.name} is the most advanced: {what} {best.seqno} ({best.source})"
    if rest:
        reason += "; " + ", ".join(f"{c.name} {c.seqno} ({c.source})" for c in rest)
    ties = [c.name for c in rest if c.seqno == best.seqno]
    if ties:
        reason += (f". {', '.join(ties)} {'has' if len(ties) == 1 else 'have'} the same position: "
                   f"either is safe; {best.name} comes "
                   + ("first as the node Galera marked safe_to_bootstrap" if best.safe_to_bootstrap
                      else "first in the inventory"))
    return reason


def choose_bootstrap_node(
    view: GaleraView,
    disk: list[DiskPosition] | None = None,
    overridden: bool = False,
    gone: tuple[str, ...] = (),
    down_disk: list[DiskPosition] | None = None,
) -> BootstrapDecision:
    """Choose the node to bootstrap a new Primary component from, and say why.

    Some node answering (non-Primary): the running node with the highest
    wsrep_last_committed; `down_disk` are the positions the nodes that are down saved on
    disk, and one further on than the choice is named as a risk (it rejoins by taking the
    survivor's data). Every node down: the highest seqno from grastate.dat, or from
    `--wsrep-recover` where grastate.dat says -1 (given in `disk`; without it the
    decision says to read them). `overridden` means the operator broke the glass on a
    refusal: choose anyway and say what that risks.
    """
    order = [n.name for n in view.nodes]
    block = assess_primary(view)
    risks: list[str] = []
    if block is not None:
        if not overridden:
            return BootstrapDecision(branch="running", chosen=None, reason=block.summary, refused=block.kind)
        risks.append(f"the safety check was overridden: {block.summary}; {block.risk}")
    up = [n for n in view.nodes if n.state == "up" and not n.is_primary]
    silent = [n for n in view.nodes if n.state in ("hung", "unreachable")]
    primary = [n for n in view.nodes if n.is_primary]
    if primary and not up:
        # Overridden, yet every answering node is Primary already: bootstrapping one is never right.
        return BootstrapDecision(
            branch="running", chosen=None, refused=block.kind if block else "healthy",
            reason=f"nothing to bootstrap: {names_of(primary)} {'is' if len(primary) == 1 else 'are'} already Primary; "
                   f"the nodes that are not back only need to be started",
        )
    if up:
        rows = [Candidate(name=n.name, uuid=n.state_uuid, seqno=n.last_committed, source="wsrep_last_committed")
                for n in up]
        ranked = sorted(rows, key=_rank_key(order))
        best, rest = ranked[0], ranked[1:]
        if rest:
            reason = _describe_ranking(best, rest, "wsrep_last_committed")
        else:
            reason = (f"{best.name} is the only node still running (wsrep_last_committed {best.seqno}); "
                      f"it keeps every write the lost Primary component committed while it was a member")
        down = [n for n in view.nodes if n.state == "down"]
        if down:
            reason += (f". {names_of(down)} {'is' if len(down) == 1 else 'are'} down; "
                       f"{'it' if len(down) == 1 else 'they'} will be started afterwards and catch up from {best.name}")
        for n in silent:
            risks.append(f"{n.name} did not answer ({n.state}: {n.error}); its position is unknown. If it committed "
                         f"writes {best.name} lacks, they are lost when it rejoins (it takes {best.name}'s data)")
        risks += _history_risks(best, ranked)
        risks += _down_ahead_risks(best, down_disk or [], gone)
        return _decided("running", best, ranked, reason, risks, view, gone)
    if disk is None:
        return BootstrapDecision(
            branch="all-down", chosen=None,
            reason="no node answers: " + "; ".join(f"{n.name} {n.state}" for n in view.nodes)
                   + ". The positions saved on disk decide: grastate.dat, then --wsrep-recover where its seqno is -1",
        )
    known = [p for p in disk if p.known]
    rows = [Candidate(name=p.name, uuid=p.uuid, seqno=p.seqno, source=p.source, safe_to_bootstrap=p.safe_to_bootstrap)
            for p in known]
    for p in disk:
        if p.known or p.name in gone:
            continue
        why = "its mariadbd still runs but does not answer (hung?)" if p.running else (p.error or "no position")
        risks.append(f"{p.name}: position unknown ({why}). If it is more advanced, its extra writes are lost")
    if not rows:
        return BootstrapDecision(
            branch="all-down", chosen=None, risks=risks, refused="no-position",
            reason="no node's position could be read: " + "; ".join(
                f"{p.name}: {'still running (hung?)' if p.running else p.error or 'seqno -1'}" for p in disk),
        )
    ranked = sorted(rows, key=_rank_key(order))
    best, rest = ranked[0], ranked[1:]
    reason = _describe_ranking(best, rest, "seqno")
    risks += _history_risks(best, ranked)
    return _decided("all-down", best, ranked, reason, risks, view, gone)


def _down_ahead_risks(best: Candidate, down: list[DiskPosition], gone: tuple[str, ...]) -> list[str]:
    """Nodes that are down may have stayed in the Primary component longer than the running
    survivor (it left first, they committed more, then crashed): found by the explorer, a
    survivor behind a crashed node was bootstrapped and the crashed node's last writes were
    overwritten when it rejoined, without a word."""
    risks = []
    for p in down:
        if p.name in gone:
            continue
        if not p.known:
            why = "its mariadbd still runs but does not answer" if p.running else (p.error or "no position")
            risks.append(f"{p.name} is down and its saved position could not be read ({why}); if it committed "
                         f"writes {best.name} lacks, they are lost when it rejoins from {best.name}")
        elif p.uuid == best.uuid and p.seqno > best.seqno:
            risks.append(f"{p.name} is down but its data ends at seqno {p.seqno} ({p.source}), past {best.name}'s "
                         f"{best.seqno}: its last {p.seqno - best.seqno} write(s) are lost when it rejoins from "
                         f"{best.name}. To keep them, stop {best.name} and bootstrap {p.name} instead (every node down)")
    return risks


def _history_risks(best: Candidate, ranked: list[Candidate]) -> list[str]:
    other = [c for c in ranked if c.uuid and best.uuid and c.uuid != best.uuid]
    if not other:
        return []
    return [f"{', '.join(c.name for c in other)} hold(s) a different cluster history (state UUID "
            f"{other[0].uuid}, not {best.uuid}): positions from different histories cannot be compared, and "
            f"those nodes will be overwritten by a full SST"]


def _decided(branch: Branch, best: Candidate, ranked: list[Candidate], reason: str, risks: list[str],
             view: GaleraView, gone: tuple[str, ...]) -> BootstrapDecision:
    others = [n.name for n in view.nodes if n.name != best.name and n.name not in gone]
    return BootstrapDecision(
        branch=branch, chosen=best.name, reason=reason, ranking=ranked, risks=risks,
        position=f"{best.uuid}:{best.seqno}", safe_to_bootstrap=best.safe_to_bootstrap, others=others,
    )
