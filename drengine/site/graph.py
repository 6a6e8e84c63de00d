"""The dependency graph of a site: which clusters must hold before another's recovery starts.

Pure functions over names, so that the inventory can check its `depends_on:` entries while it
is validated (with the line of each entry) and everyone else can ask for the order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Loc = tuple[str | int, ...]


def dependency_problems(depends: Mapping[str, Sequence[str]]) -> list[tuple[Loc, str]]:
    """Each problem with where it is in the inventory (`clusters.NAME.depends_on.I`): a name
    that is no cluster, a cluster depending on itself, a name given twice, and every cycle."""
    from drengine.suggest import did_you_mean

    problems: list[tuple[Loc, str]] = []
    for name, deps in depends.items():
        seen: set[str] = set()
        for i, dep in enumerate(deps):
            loc: Loc = ("clusters", name, "depends_on", i)
            if dep == name:
                problems.append((loc, f"cluster {name} depends on itself; a cluster can only depend on others"))
            elif dep not in depends:
                problems.append((loc, f"cluster {name} depends on {dep!r}, which is no cluster of this inventory."
                                      f"{did_you_mean(dep, list(depends))} Clusters: {', '.join(sorted(depends))}"))
            elif dep in seen:
                problems.append((loc, f"cluster {name} names {dep} twice under depends_on; give it once"))
            seen.add(dep)
    if problems:
        return problems
    for cycle in cycles(depends):
        first = cycle[0]
        index = list(depends[first]).index(cycle[1])
        problems.append((("clusters", first, "depends_on", index),
                         "dependencies go round in a circle: " + " -> ".join(cycle)
                         + "; no cluster of a circle could be recovered first: remove one of these depends_on"))
    return problems


def cycles(depends: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Every elementary circle found by a depth-first walk, each once, as a path that ends where it began."""
    found: list[list[str]] = []
    seen_sets: set[frozenset[str]] = set()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        for dep in depends.get(name, ()):
            if dep in path:
                cycle = path[path.index(dep):] + [dep]
                key = frozenset(cycle)
                if key not in seen_sets:
                    seen_sets.add(key)
                    found.append(cycle)
            elif dep not in done and dep in depends:
                visit(dep, [*path, dep])
        done.add(name)

    for name in sorted(depends):
        if name not in done:
            visit(name, [name])
    return found


def dependency_order(depends: Mapping[str, Sequence[str]]) -> list[str]:
    """Every cluster after all it depends on; among those free to go, the inventory's order.
    The graph is known to have no cycle (the inventory refused it)."""
    order: list[str] = []
    placed: set[str] = set()
    pending = list(depends)
    while pending:
        ready = [n for n in pending if all(d in placed for d in depends[n])]
        if not ready:  # a cycle: cannot happen after validation; keep the rest in inventory order
            ready = pending[:1]
        for name in ready:
            order.append(name)
            placed.add(name)
        pending = [n for n in pending if n not in placed]
    return order


def all_dependencies(depends: Mapping[str, Sequence[str]], name: str) -> list[str]:
    """What `name` depends on, directly or through others, nearest first."""
    out: list[str] = []
    frontier = list(depends.get(name, ()))
    while frontier:
        dep = frontier.pop(0)
        if dep in out or dep == name:
            continue
        out.append(dep)
        frontier.extend(depends.get(dep, ()))
    return out


def dependents(depends: Mapping[str, Sequence[str]], name: str) -> list[str]:
    """The clusters that declare `name` under depends_on (directly)."""
    return [n for n, deps in depends.items() if name in deps]
