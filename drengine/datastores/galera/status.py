"""What a Galera observation means for `drengine status`: which nodes form the Primary
component, which are non-Primary, down or hung (and the error), how far each has committed,
and whether galera-bootstrap-survivor applies. Pure over the view; the refusals it quotes are
the runbook's own (`assess_primary`, `choose_bootstrap_node`)."""

from __future__ import annotations

from drengine.datastores.galera.connector import GaleraAPI, GaleraView, NodeView
from drengine.datastores.galera.decisions import assess_primary, choose_bootstrap_node
from drengine.datastores.mysql_traffic import proxy_statuses
from drengine.inventory import Cluster
from drengine.status import Advice, MemberState, MemberStatus, Reading, Verdict, down_words

STATES = {"up": MemberState.REACHABLE, "down": MemberState.DEAD, "hung": MemberState.HUNG,
          "unreachable": MemberState.UNREACHABLE}


def assess(cluster: Cluster, backend: GaleraAPI) -> Reading:
    reading = read_view(backend.observe())
    if not cluster.proxies:
        return reading
    return reading.model_copy(update={"proxies": proxy_statuses(backend.proxy_views())})


def _row(n: NodeView, newest: int) -> MemberStatus:
    state = STATES[n.state]
    if state is not MemberState.REACHABLE:
        return MemberStatus(name=n.name, role="node", state=state, error=n.error)
    role = f"{n.cluster_status or '?'} (component of {n.cluster_size})"
    behind = newest - n.last_committed if n.last_committed >= 0 else None
    return MemberStatus(name=n.name, role=role, state=state, position=f"seqno {n.last_committed}",
                        lag=f"{behind} behind" if behind else ("-" if behind is None else "0"),
                        note=n.local_state if n.local_state != "Synced" else "")


def _down(n: NodeView) -> str:
    return f"{n.name} is {down_words(STATES[n.state], n.error)}"


def read_view(view: GaleraView) -> Reading:
    newest = max((n.last_committed for n in view.nodes if n.state == "up"), default=-1)
    rows = [_row(n, newest) for n in view.nodes]
    block = assess_primary(view)
    primary = [n for n in view.nodes if n.is_primary]
    missing = [n for n in view.nodes if n.state != "up"]
    if block is not None and block.kind == "healthy":
        unsynced = [n for n in primary if n.local_state != "Synced"]
        if not unsynced:
            return Reading(verdict=Verdict.HEALTHY, members=rows,
                           headline=f"every node ({len(primary)}) is in the Primary component and Synced "
                                    f"(last committed {newest})")
        return Reading(verdict=Verdict.DEGRADED, members=rows,
                       headline=f"the Primary component has every node, but {', '.join(n.name for n in unsynced)} "
                                f"{'is' if len(unsynced) == 1 else 'are'} not Synced yet",
                       evidence=[n.describe() for n in unsynced],
                       advice=[Advice(why="wait for the state transfer (Joiner/Donor) to finish; look at the node's "
                                          "error log if it does not move")])
    if block is not None and block.kind == "primary-alive":
        return Reading(verdict=Verdict.DEGRADED, members=rows,
                       headline=f"the Primary component ({', '.join(n.name for n in primary)}) serves; "
                                f"{', '.join(n.name for n in missing)} {'is' if len(missing) == 1 else 'are'} out of it",
                       evidence=[_down(n) for n in missing],
                       advice=[Advice(why=f"start {', '.join(n.name for n in missing)} normally: "
                                          f"{'it rejoins' if len(missing) == 1 else 'they rejoin'} the Primary "
                                          f"component by IST or SST; no bootstrap is needed (it would split the cluster)")])
    if block is not None:
        # Two sides: a Primary one and a non-Primary one, or two non-Primary groups.
        return Reading(verdict=Verdict.SPLIT, members=rows, headline=block.summary,
                       evidence=[block.observed, f"why it matters: {block.why}"],
                       advice=[Advice(why=block.next_steps)])
    # No Primary component anywhere: the cluster takes no writes.
    decision = choose_bootstrap_node(view)
    evidence = [n.describe() for n in view.nodes]
    if decision.chosen is not None:
        headline = (f"no Primary component: the cluster takes no writes ({_counts(view)}). "
                    f"Most advanced running node: {decision.chosen}")
        evidence.append(f"the most advanced node is {decision.chosen}: {decision.reason}")
        evidence += [f"RISK: {r}" for r in decision.risks]
        why = f"bootstrap {decision.chosen} as the new Primary component, then start the others"
    else:
        headline = f"no Primary component and no node answers ({_counts(view)})"
        evidence.append(decision.reason)
        why = "bootstrap the most advanced node from the positions saved on disk (the plan reads grastate.dat " \
              "over the nodes' hosts), then start the others"
    # The histories tie, or a down node is ahead of every running one: the node to bootstrap is
    # the operator's choice (decisions.py), so the runbook needs it named.
    named = {"bootstrap": f"the node to bootstrap: {decision.reason}"} \
        if decision.refused in ("histories", "down-ahead") else {}
    return Reading(verdict=Verdict.DOWN, members=rows, headline=headline, evidence=evidence,
                   advice=[Advice(runbook="galera-bootstrap-survivor", why=why, inputs=named)])


def _counts(view: GaleraView) -> str:
    counts: dict[str, int] = {}
    for n in view.nodes:
        key = (n.cluster_status or "no status") if n.state == "up" else n.state
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{v} {k}" for k, v in counts.items())
