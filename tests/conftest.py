"""Shared fixtures: every storage test runs on a real SQLite file and on a real PostgreSQL database.

PostgreSQL comes from ACP_TEST_POSTGRES_URL (a server URL; the test database is created on it), or
postgresql://postgres@127.0.0.1:5432/postgres. Each test session creates its own uniquely named database and
drops it at the end. Under CI=true an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy.engine import make_url

from agent_control_plane import ControlPlaneFacade, ManualClock

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
POLICY = {
    "default_tier": "always_approve",
    "actions": {
        "read_*": "unrestricted",
        "delete_*": "blocked",
        "tidy_*": "auto_approve",
        "rewrite_*": "steer",
    },
}


def _server_url() -> str:
    return os.environ.get("ACP_TEST_POSTGRES_URL", DEFAULT_POSTGRES)


def _psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _postgres_problem() -> str | None:
    try:
        with psycopg.connect(_psycopg_dsn(_server_url()), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__


@dataclass(frozen=True)
class Backend:
    """One database the tests run against: `url` is a database of its own for this test session."""

    name: str
    url: str

    @property
    def async_url(self) -> str:
        if self.name == "sqlite":
            return self.url.replace("sqlite://", "sqlite+aiosqlite://", 1)
        return self.url.replace("postgresql+psycopg://", "postgresql+asyncpg://", 1)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    problem = _postgres_problem()
    if problem is not None:
        message = f"PostgreSQL at {_server_url()} is unreachable: {problem}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: PostgreSQL is required, not optional)", pytrace=False)
        pytest.skip(message)
    name = f"acp_test_{uuid.uuid4().hex[:12]}"
    admin = _psycopg_dsn(_server_url())
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(_server_url()).set(drivername="postgresql+psycopg", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A database URL on each backend. Tests on PostgreSQL share one database but use their own table prefix."""
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path / 'acp.db'}")
    return Backend("postgres", request.getfixturevalue("postgres_database"))


@pytest.fixture
def table_prefix() -> str:
    """A fresh table prefix per test, so tests sharing the PostgreSQL database never see each other's rows."""
    return f"t{uuid.uuid4().hex[:10]}_"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def set_up_plane(
    backend: Backend, prefix: str, policy: dict[str, Any], clock: ManualClock | None = None
) -> ControlPlaneFacade:
    """A control plane with `policy` on the test database, its tables created (close it, or use it in `with`)."""
    plane = ControlPlaneFacade.from_database_url(backend.url, policy=policy, table_prefix=prefix, clock=clock)
    plane.setup()
    return plane


def migrate_to(cp: ControlPlaneFacade, revision: str) -> None:
    """Bring `cp`'s tables to an older `revision`, to test upgrading from what it stored."""
    from alembic import command
    from alembic.config import Config

    from agent_control_plane.store import migrate

    config = Config()
    config.set_main_option("script_location", str(Path(migrate.__file__).with_name("migrations")))
    config.attributes["registry"] = cp.registry
    with cp.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


@pytest.fixture
def cp(backend: Backend, table_prefix: str, clock: ManualClock) -> Iterator[ControlPlaneFacade]:
    """A set-up sync control plane on each backend, with a manual clock and the test policy."""
    plane = ControlPlaneFacade.from_database_url(backend.url, policy=POLICY, clock=clock, table_prefix=table_prefix)
    plane.setup()
    yield plane
    plane.close()
