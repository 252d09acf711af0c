"""dockerd's list filters (filters.Args), one implementation for containers, images, volumes,
networks and prune: `label=k`, `label=k=v`, `label!=...`, and name/id patterns."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence


def has_label(labels: Mapping[str, str], item: str) -> bool:
    """`k` matches any value of k; `k=v` only that value."""
    key, eq, value = item.partition("=")
    return key in labels and (not eq or labels[key] == value)


def labels_match(labels: Mapping[str, str], filters: Mapping[str, Sequence[str]]) -> bool:
    """Every `label` filter holds and no `label!` filter does."""
    return (all(has_label(labels, item) for item in filters.get("label", ()))
            and not any(has_label(labels, item) for item in filters.get("label!", ())))


def value_matches(pattern: str, value: str) -> bool:
    """filters.Args.Match: the exact value, else an unanchored regular-expression search."""
    if pattern == value:
        return True
    try:
        return re.search(pattern, value) is not None
    except re.error:
        return False
