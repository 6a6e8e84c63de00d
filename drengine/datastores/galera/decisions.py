"""MariaDB Galera decisions, pure and without I/O: is a Primary component still alive (or do
two separate non-Primary groups stand, both sides of a partition)? Which node is the most
advanced, from running nodes or from what crashed nodes saved on disk? And the facts they hand
to the steps of `galera-bootstrap-survivor` (galera/actions.py).

Bootstrapping the wrong node loses every write the more advanced nodes had; bootstrapping
both sides of a partition makes two clusters whose data diverge; bootstrapping a node of
another cluster history rewrites every other node into it. The decisions therefore refuse
while any node is Primary and while two separate non-Primary groups could each be
bootstrapped; they rank only the nodes of the history most nodes hold, and refuse while a
node that is down may be further on (its position unknown, or known past every running
node), unless the operator names the node (`--input bootstrap=NODE`).
"""

from __future__ import annotations

from collections import Counter
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
    named: bool = False  # the operator named the node (--input bootstrap=NODE)
    held: dict[str, str] = {}  # node -> the history (state UUID) its data belongs to, where known


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
    named: str | None = None,
) -> BootstrapDecision:
    """Choose the node to bootstrap a new Primary component from, and say why.

    Only nodes of the cluster's history compete: the history most nodes hold (a running node's
    wsrep_cluster_state_uuid, a stopped one's grastate.dat). Seqnos of different histories count
    different things: a stray node at 101 of another history is not ahead of 103 of this one,
    and bootstrapping it rewrites every other node into its history. Two histories held by as
    many nodes each: drengine does not pick one (the operator names the node).

    Some node answering (non-Primary): the running node with the highest wsrep_last_committed,
    unless a node that is down holds a position further on (`disk`/`down_disk`: what the down
    nodes saved): then every write it has past the survivor would be lost, and the decision
    refuses (stop the running nodes and rerun: every node down, the best one is started; or
    name the node). Every node down: the highest seqno from grastate.dat, or from
    `--wsrep-recover` where grastate.dat says -1 (given in `disk`; without it the decision says
    to read them). `named`: the operator's explicit choice (`--input bootstrap=NODE`).
    `overridden` means the operator broke the glass on a refusal: choose anyway and say what
    that risks.
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
    saved = disk if disk is not None else down_disk
    held = {n.name: n.state_uuid for n in up if n.state_uuid}
    held |= {p.name: p.uuid for p in saved or [] if p.uuid and p.name not in held}
    if up:
        return _choose_running(view, up, silent, saved or [], risks, gone, named, order).model_copy(update={"held": held})
    if saved is None:
        return BootstrapDecision(
            branch="all-down", chosen=None,
            reason="no node answers: " + "; ".join(f"{n.name} {n.state}" for n in view.nodes)
                   + ". The positions saved on disk decide: grastate.dat, then --wsrep-recover where its seqno is -1",
        )
    return _choose_down(view, saved, risks, gone, named, order).model_copy(update={"held": held})


def cluster_history(view: GaleraView, disk: list[DiskPosition]) -> tuple[str | None, str]:
    """The history most nodes hold (None on a tie), and in words how the nodes split."""
    held = [n.state_uuid for n in view.nodes if n.state == "up" and n.state_uuid]
    held += [p.uuid for p in disk if p.uuid and p.name not in {n.name for n in view.nodes if n.state == "up"}]
    counts = Counter(held).most_common()
    split = "; ".join(f"{count} node(s) of {uuid}" for uuid, count in counts)
    if not counts or (len(counts) > 1 and counts[0][1] == counts[1][1]):
        return None, split
    return counts[0][0], split


def _unknown(branch: Branch, disk: list[DiskPosition], gone: tuple[str, ...], risks: list[str]) -> BootstrapDecision | None:
    """A node that is down and whose position could not be read (seqno -1 not recovered, or the
    read failed) may be the most advanced: nothing is bootstrapped past it unless the operator
    says so. A hung node is not among them: it is fenced first, and what it saved compared."""
    unknown = [p for p in disk if not p.known and not p.running and p.name not in gone]
    if not unknown:
        return None
    shown = "; ".join(f"{p.name}: {p.error or 'grastate.dat says seqno -1 and --wsrep-recover did not run'}"
                      for p in unknown)
    return BootstrapDecision(
        branch=branch, chosen=None, risks=risks, refused="unknown",
        reason=f"the position of {', '.join(p.name for p in unknown)} is unknown ({shown}); it may hold writes every "
               f"other node lacks. Recover it (rerun, approving recover-positions), declare it gone for good "
               f"(--gone NODE), or name the node to bootstrap (--input bootstrap=NODE)")


def _no_history(branch: Branch, split: str, risks: list[str]) -> BootstrapDecision:
    return BootstrapDecision(
        branch=branch, chosen=None, risks=risks, refused="histories",
        reason=f"the nodes hold different cluster histories in equal numbers ({split}): drengine cannot tell which "
               f"is the cluster's. Name the node to bootstrap with --input bootstrap=NODE; the others are rewritten "
               f"into its history by a full SST")


def _named(candidates: list[Candidate], named: str, branch: Branch, where: str) -> Candidate | BootstrapDecision:
    found = [c for c in candidates if c.name == named]
    if found:
        return found[0]
    return BootstrapDecision(branch=branch, chosen=None, refused="named",
                             reason=f"{named} was named to bootstrap (--input bootstrap={named}), but it is not {where}")


def _choose_running(view: GaleraView, up: list[NodeView], silent: list[NodeView], down: list[DiskPosition],
                    risks: list[str], gone: tuple[str, ...], named: str | None, order: list[str]) -> BootstrapDecision:
    rows = [Candidate(name=n.name, uuid=n.state_uuid, seqno=n.last_committed, source="wsrep_last_committed")
            for n in up]
    history, split = cluster_history(view, down)
    if named:
        picked = _named(rows, named, "running", "a running non-Primary node (stop the running nodes first to "
                                                "bootstrap one that is down)")
        if isinstance(picked, BootstrapDecision):
            return picked
        ranked = [picked, *[c for c in sorted(rows, key=_rank_key(order)) if c is not picked]]
        reason = f"{named} was named by the operator (--input bootstrap={named}), at {picked.uuid}:{picked.seqno}"
        return _decided("running", picked, ranked, reason, risks + _history_risks(picked, ranked), view, gone, True)
    if history is None:
        return _no_history("running", split, risks)
    unknown = _unknown("running", down, gone, risks)
    if unknown is not None:
        return unknown
    ranked = sorted([c for c in rows if c.uuid == history], key=_rank_key(order)) + \
        [c for c in rows if c.uuid != history]
    if not ranked or ranked[0].uuid != history:
        return BootstrapDecision(branch="running", chosen=None, risks=risks, refused="histories",
                                 reason=f"no running node holds the cluster's history {history} ({split})")
    best, rest = ranked[0], ranked[1:]
    ahead = [p for p in down if p.known and p.uuid == history and p.seqno > best.seqno and p.name not in gone]
    if ahead:
        far = max(ahead, key=lambda p: p.seqno)
        return BootstrapDecision(
            branch="running", chosen=None, ranking=ranked, risks=risks, refused="down-ahead",
            reason=f"{far.name} is down but its data ends at seqno {far.seqno} ({far.source}), past {best.name}'s "
                   f"{best.seqno}, the best running node: bootstrapping {best.name} loses its last "
                   f"{far.seqno - best.seqno} write(s). Stop the running node(s) ({names_of(up)}) cleanly and rerun "
                   f"(every node down, {far.name} is started as the new cluster), or name the node with "
                   f"--input bootstrap={best.name} to give those writes up")
    reason = _describe_ranking(best, rest, "wsrep_last_committed") if rest else (
        f"{best.name} is the only node still running (wsrep_last_committed {best.seqno}); "
        f"it keeps every write the lost Primary component committed while it was a member")
    others_down = [n for n in view.nodes if n.state == "down"]
    if others_down:
        reason += (f". {names_of(others_down)} {'is' if len(others_down) == 1 else 'are'} down; "
                   f"{'it' if len(others_down) == 1 else 'they'} will be started afterwards and catch up from {best.name}")
    for n in silent:
        risks.append(f"{n.name} did not answer ({n.state}: {n.error}); its position is unknown. It is fenced "
                     f"first, and what it saved is compared before the bootstrap")
    risks += _history_risks(best, ranked)
    risks += _down_ahead_risks(best, down, gone)
    return _decided("running", best, ranked, reason, risks, view, gone)


def _choose_down(view: GaleraView, disk: list[DiskPosition], risks: list[str], gone: tuple[str, ...],
                 named: str | None, order: list[str]) -> BootstrapDecision:
    rows = [Candidate(name=p.name, uuid=p.uuid, seqno=p.seqno, source=p.source, safe_to_bootstrap=p.safe_to_bootstrap)
            for p in disk if p.known]
    for p in disk:
        if p.running and p.name not in gone:
            risks.append(f"{p.name}: its mariadbd still runs but does not answer (hung?): position unknown. It is "
                         f"fenced first, and what it saved is compared before the bootstrap")
    if named:
        picked = _named(rows, named, "all-down", "a node whose saved position could be read")
        if isinstance(picked, BootstrapDecision):
            return picked
        ranked = [picked, *[c for c in sorted(rows, key=_rank_key(order)) if c is not picked]]
        reason = f"{named} was named by the operator (--input bootstrap={named}), at {picked.uuid}:{picked.seqno}"
        return _decided("all-down", picked, ranked, reason, risks + _history_risks(picked, ranked), view, gone, True)
    history, split = cluster_history(view, disk)
    if history is None and rows:
        return _no_history("all-down", split, risks)
    unknown = _unknown("all-down", disk, gone, risks)
    if unknown is not None:
        return unknown
    mine = [c for c in rows if c.uuid == history]
    if not mine:
        return BootstrapDecision(
            branch="all-down", chosen=None, risks=risks, refused="no-position",
            reason="no position of the cluster's history could be read: " + "; ".join(
                f"{p.name}: {'still running (hung?)' if p.running else p.error or 'seqno -1'}" if not p.known
                else f"{p.name}: {p.uuid}:{p.seqno}" for p in disk),
        )
    ranked = sorted(mine, key=_rank_key(order)) + [c for c in rows if c.uuid != history]
    best, rest = ranked[0], [c for c in ranked[1:] if c.uuid == history]
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
             view: GaleraView, gone: tuple[str, ...], named: bool = False) -> BootstrapDecision:
    others = [n.name for n in view.nodes if n.name != best.name and n.name not in gone]
    return BootstrapDecision(named=named,
        branch=branch, chosen=best.name, reason=reason, ranking=ranked, risks=risks,
        position=f"{best.uuid}:{best.seqno}", safe_to_bootstrap=best.safe_to_bootstrap, others=others,
    )
