"""`ControlPlaneSetup`: one place to say what a control plane is, then build it, sync or async, ready to use.

    cp = ControlPlaneSetup(database_url, token_budget_configs=[...], model_policy={...}).build_async()

Building creates or upgrades the schema and applies the token budgets (creating or updating each to match; budgets
added at run time and not listed are left alone), so a fresh database works at once and a restart picks up every
window's totals where they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.engine import URL

from agent_control_plane.aio import AsyncControlPlaneFacade
from agent_control_plane.clock import Clock
from agent_control_plane.errors import InvalidInputError
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.plane.context import DEFAULT_RESERVATION_TTL
from agent_control_plane.plane.core import ControlPlaneCore
from agent_control_plane.policy.evaluators import EvaluatorRegistry
from agent_control_plane.policy.model import PolicySource
from agent_control_plane.policy.model_access import ModelPolicySource
from agent_control_plane.policy.routing import RiskClassifier
from agent_control_plane.store.dialect import (
    SqliteSync,
    StorageOptions,
    create_asynchronous_engine,
    create_sync_engine,
    synchronous_twin,
)
from agent_control_plane.store.tables import ScopedModelRegistry
from agent_control_plane.types.tokens import TokenBudgetConfig


class ControlPlaneSetup:
    """The configuration of one control plane: database, policy, token budgets, model policy, clock.

    `build()` returns a `ControlPlaneFacade`, `build_async()` an `AsyncControlPlaneFacade` (whose
    `token_budget_tracker()` is the asyncio tracker); both are set up and hold the budgets when they return.
    Everything is checked here, before anything touches the database: a bad policy, model policy or budget is
    refused whole. `close()` closes what was built (`aclose()` also closes async facades).
    """

    def __init__(
        self,
        database_url: str | URL = "sqlite:///./acp.db",
        *,
        policy: PolicySource | None = None,
        token_budget_configs: Sequence[TokenBudgetConfig] = (),
        model_policy: ModelPolicySource | None = None,
        clock: Clock | None = None,
        table_prefix: str = "acp_",
        schema: str | None = None,
        registry: ScopedModelRegistry | None = None,
        evaluators: EvaluatorRegistry | None = None,
        risk_classifier: RiskClassifier | None = None,
        sqlite_synchronous: SqliteSync = "FULL",
        reservation_ttl: timedelta = DEFAULT_RESERVATION_TTL,
    ) -> None:
        if isinstance(token_budget_configs, TokenBudgetConfig):
            raise InvalidInputError("token_budget_configs must be a list of TokenBudgetConfig, not a single one")
        self.database_url = database_url
        self._options = StorageOptions(sqlite_synchronous=sqlite_synchronous)
        self._core = ControlPlaneCore(
            policy=policy,
            clock=clock,
            registry=registry or ScopedModelRegistry(table_prefix, schema),
            evaluators=evaluators,
            risk_classifier=risk_classifier,
            model_policy=model_policy,
            reservation_ttl=reservation_ttl,
        )
        self._configs = list(token_budget_configs)
        self._core.apply_budgets(self._configs)  # validates them now, without the database
        self._built: list[ControlPlaneFacade] = []
        self._built_async: list[AsyncControlPlaneFacade] = []

    def _prepare(self, url: str | URL) -> ControlPlaneFacade:
        facade = ControlPlaneFacade(create_sync_engine(url, self._options), self._core)
        try:
            facade.setup()
            facade.apply_token_budgets(self._configs)
        except BaseException:
            facade.close()
            raise
        return facade

    def build(self) -> ControlPlaneFacade:
        """A synchronous control plane, its schema set up and its token budgets applied."""
        facade = self._prepare(self.database_url)
        self._built.append(facade)
        return facade

    def build_async(self) -> AsyncControlPlaneFacade:
        """An asyncio control plane, its schema set up and its token budgets applied.

        The set-up runs now, through the synchronous driver of the same database (psycopg for asyncpg URLs), so
        this is a plain call: `cp = ControlPlaneSetup(...).build_async()`.
        """
        self._prepare(synchronous_twin(self.database_url)).close()
        facade = AsyncControlPlaneFacade(create_asynchronous_engine(self.database_url, self._options), self._core)
        self._built_async.append(facade)
        return facade

    def close(self) -> None:
        """Close every synchronous facade built here (async ones need `await aclose()`)."""
        while self._built:
            self._built.pop().close()

    async def aclose(self) -> None:
        """Close every facade built here, synchronous and async."""
        self.close()
        while self._built_async:
            await self._built_async.pop().close()
