"""A cluster runbook's inputs in a site's recovery: `--input CLUSTER:NAME=VALUE`.

A site plan or run picks each cluster's runbook from its status; some verdicts leave a choice
only the operator can make (the Galera node to bootstrap when the histories tie), and a runbook
may declare an input `required: true`. Such a cluster is not planned or run on the runbook's
defaults: the site plan names the `--input` it needs, the site run refuses that cluster's
recovery (what depends on it waits) until it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from drengine.errors import InputError

if TYPE_CHECKING:
    from drengine.inventory import Inventory
    from drengine.runbook import Runbook
    from drengine.status import Advice

SiteInputs = dict[str, dict[str, str]]  # cluster -> input name -> value


def parse_site_inputs(values: Iterable[str], inventory: Inventory) -> SiteInputs:
    """`--input CLUSTER:NAME=VALUE`, each naming a cluster of the inventory."""
    from drengine.suggest import did_you_mean

    parsed: SiteInputs = {}
    for raw in values:
        target, eq, value = raw.partition("=")
        cluster, colon, name = target.partition(":")
        if not (eq and colon and cluster and name):
            raise InputError(f"--input {raw}: expected CLUSTER:NAME=VALUE (a site has several clusters: "
                             f"say whose runbook takes the input)")
        if cluster not in inventory.clusters:
            raise InputError(f"--input {raw}: {inventory.path} has no cluster {cluster!r}."
                             f"{did_you_mean(cluster, inventory.clusters)} Its clusters: {', '.join(inventory.clusters)}")
        parsed.setdefault(cluster, {})[name] = value
    return parsed


def unknown_inputs(cluster: str, runbook: Runbook, given: Mapping[str, str]) -> str | None:
    """Why the inputs given for this cluster do not fit the runbook its status named (None: they do)."""
    declared = runbook.spec.inputs
    unknown = sorted(n for n in given if n not in declared)
    if not unknown:
        return None
    known = ", ".join(declared) or "none"
    return (f"--input {cluster}:{unknown[0]}: runbook {runbook.name} (the one its status names) has no input "
            f"named {unknown[0]!r}; its inputs: {known}")


def needed_inputs(runbook: Runbook, advice: Advice, given: Mapping[str, str]) -> dict[str, str]:
    """The inputs this recovery needs and was not given, each with what to give: the runbook's
    required inputs, and those the status verdict says only the operator can choose."""
    needs = {n: s.description for n, s in runbook.spec.inputs.items() if s.required and n not in given}
    needs.update({n: why for n, why in advice.inputs.items() if n not in given})
    return needs


def input_flags(cluster: str, needs: Mapping[str, str]) -> list[str]:
    return [f"--input {cluster}:{name}=VALUE ({why})" for name, why in needs.items()]


def needs_words(cluster: str, runbook: str, needs: Mapping[str, str]) -> str:
    return f"runbook {runbook} needs " + "; ".join(input_flags(cluster, needs))
