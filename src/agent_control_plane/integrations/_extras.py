"""The error an adapter raises when its framework is not installed: an ImportError that names the extra."""

from __future__ import annotations

from collections.abc import Collection
from typing import NoReturn


def require_extra(exc: ModuleNotFoundError, modules: Collection[str], what: str, package: str, extra: str) -> NoReturn:
    """Re-raise `exc` as an ImportError saying which extra to install, when the missing module is one of the
    framework's `modules` (top-level names); any other missing module is re-raised as it is."""
    if (exc.name or "").partition(".")[0] not in modules:
        raise exc
    raise ImportError(
        f"{what} needs the `{package}` package: pip install 'agent-control-plane[{extra}]'", name=exc.name
    ) from exc
