""""Did you mean": the nearest known names to a mistyped one, for every message that refuses
a runbook, cluster, member, fault or run name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def close_names(word: str, known: Iterable[str], limit: int = 3) -> list[str]:
    names = list(dict.fromkeys(known))
    found = difflib.get_close_matches(word, names, n=limit, cutoff=0.6)
    # A typed start of a long name ("mariadb-prom") is a strong hint even when difflib's ratio is low.
    found += [n for n in names if word and n.startswith(word) and n not in found]
    return found[:limit]


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """` Did you mean X?` (with a leading space), or "" when nothing is close."""
    found = close_names(word, known)
    if not found:
        return ""
    return " Did you mean " + " or ".join(repr(f) for f in found) + "?"
