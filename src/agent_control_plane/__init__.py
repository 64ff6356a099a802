"""agent-control-plane: safety and approval controls for AI agents.

The control plane decides; the host's agents and tools execute. Everything importable from here is the public
API; every other module is internal.
"""

from agent_control_plane.aio import AsyncControlPlaneFacade
from agent_control_plane.clock import Clock, ManualClock, SystemClock
from agent_control_plane.errors import (
    AlreadySettledError,
    ControlPlaneError,
    EventLogError,
    InvalidInputError,
    NotFoundError,
    PolicyError,
    ProposalNotFoundError,
    SchemaNotReadyError,
    SessionNotFoundError,
    SessionStateError,
    StorageError,
    TokenBudgetExhaustedError,
)
from agent_control_plane.facade import ControlPlaneFacade
from agent_control_plane.maintenance import CrashRecovery, TimeoutEscalation
from agent_control_plane.plane.approvals import TicketNotFoundError
from agent_control_plane.plane.events import BufferStats
from agent_control_plane.plane.heartbeats import Heartbeat
from agent_control_plane.plane.proposals import Outcome, Settlement
from agent_control_plane.plane.recovery import RecoveryReport
from agent_control_plane.policy.choice import TierChoice
from agent_control_plane.policy.conditions import Condition, ConditionEvaluator, Facts
from agent_control_plane.policy.engine import PolicyEngine
from agent_control_plane.policy.evaluators import (
    EvaluatorRegistry,
    EvaluatorSpec,
    ListEvaluator,
    ParallelPolicyEvaluator,
    RegexEvaluator,
    Verdict,
)
from agent_control_plane.policy.model import Policy, load_policy
from agent_control_plane.policy.model_access import ModelGovernor, ModelPolicy, load_model_policy
from agent_control_plane.policy.routing import AgentRegistry, ProposalRouter, RiskClassifier
from agent_control_plane.policy.whatif import PolicyChange, RecordedProposal, WhatIfReport
from agent_control_plane.setup import ControlPlaneSetup
from agent_control_plane.store.tables import ScopedModelRegistry
from agent_control_plane.tracker import SyncTokenBudgetTracker, TokenBudgetTracker
from agent_control_plane.types.decisions import (
    ActionTier,
    Decision,
    DecisionCode,
    RiskLevel,
    SteeringContext,
    TraceStep,
)
from agent_control_plane.types.events import EventFrame, EventKind, VerifyReport
from agent_control_plane.types.identity import IdentityContext, ModelId, OrgId, TeamId, UserId
from agent_control_plane.types.sessions import (
    BudgetSnapshot,
    KillScope,
    KillSwitchInfo,
    SessionInfo,
    SessionStatus,
)
from agent_control_plane.types.tickets import GrantScope, Ticket, TicketStatus
from agent_control_plane.types.tokens import (
    BudgetCheckResult,
    BudgetPeriod,
    ModelAccessResult,
    ModelTier,
    ModelUsage,
    TokenBudgetConfig,
    TokenBudgetState,
    TokenUsage,
    UsageRecord,
    UsageSummary,
)

__version__ = "0.1.0"

__all__ = [
    "ActionTier",
    "AgentRegistry",
    "AlreadySettledError",
    "AsyncControlPlaneFacade",
    "BudgetCheckResult",
    "BudgetPeriod",
    "BudgetSnapshot",
    "BufferStats",
    "Clock",
    "Condition",
    "ConditionEvaluator",
    "ControlPlaneError",
    "ControlPlaneFacade",
    "ControlPlaneSetup",
    "CrashRecovery",
    "Decision",
    "DecisionCode",
    "EvaluatorRegistry",
    "EvaluatorSpec",
    "EventFrame",
    "EventKind",
    "EventLogError",
    "Facts",
    "GrantScope",
    "Heartbeat",
    "IdentityContext",
    "InvalidInputError",
    "KillScope",
    "KillSwitchInfo",
    "ListEvaluator",
    "ManualClock",
    "ModelAccessResult",
    "ModelGovernor",
    "ModelId",
    "ModelPolicy",
    "ModelTier",
    "ModelUsage",
    "NotFoundError",
    "OrgId",
    "Outcome",
    "ParallelPolicyEvaluator",
    "Policy",
    "PolicyChange",
    "PolicyEngine",
    "PolicyError",
    "ProposalNotFoundError",
    "ProposalRouter",
    "RecordedProposal",
    "RecoveryReport",
    "RegexEvaluator",
    "RiskClassifier",
    "RiskLevel",
    "SchemaNotReadyError",
    "ScopedModelRegistry",
    "SessionInfo",
    "SessionNotFoundError",
    "SessionStateError",
    "SessionStatus",
    "Settlement",
    "SteeringContext",
    "StorageError",
    "SyncTokenBudgetTracker",
    "SystemClock",
    "TeamId",
    "Ticket",
    "TicketNotFoundError",
    "TicketStatus",
    "TierChoice",
    "TimeoutEscalation",
    "TokenBudgetConfig",
    "TokenBudgetExhaustedError",
    "TokenBudgetState",
    "TokenBudgetTracker",
    "TokenUsage",
    "TraceStep",
    "UsageRecord",
    "UsageSummary",
    "UserId",
    "Verdict",
    "VerifyReport",
    "WhatIfReport",
    "__version__",
    "load_model_policy",
    "load_policy",
]
