"""`PatternTable`: action-name patterns to values, where the most specific match wins.

An exact name beats any glob; among globs, the one with more literal (non-wildcard) characters wins, then the
longer pattern, then the one written first. Exact names are a dict lookup; globs are precompiled and tried in
order of specificity, so the first match is the answer.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

V = TypeVar("V")

_WILDCARDS = re.compile(r"[*?\[\]]")


def is_glob(pattern: str) -> bool:
    return _WILDCARDS.search(pattern) is not None


class PatternTable(Generic[V]):
    """Look up the value of the most specific pattern matching a name."""

    __slots__ = ("_exact", "_globs")

    def __init__(self, entries: Mapping[str, V]) -> None:
        self._exact: dict[str, V] = {}
        ranked: list[tuple[int, int, int, str, V]] = []
        for position, (pattern, value) in enumerate(entries.items()):
            if is_glob(pattern):
                ranked.append((-len(_WILDCARDS.sub("", pattern)), -len(pattern), position, pattern, value))
            else:
                self._exact[pattern] = value
        ranked.sort(key=lambda entry: entry[:3])
        self._globs: tuple[tuple[Callable[[str], re.Match[str] | None], V], ...] = tuple(
            (re.compile(fnmatch.translate(pattern)).match, value) for *_, pattern, value in ranked
        )

    def lookup(self, name: str) -> V | None:
        value = self._exact.get(name)
        if value is not None:
            return value
        for match, glob_value in self._globs:
            if match(name) is not None:
                return glob_value
        return None

    def __bool__(self) -> bool:
        return bool(self._exact or self._globs)
