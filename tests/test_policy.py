"""The minimal policy format and PolicyEngine: pure, no database."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_control_plane import ActionTier, Policy, PolicyEngine, PolicyError, load_policy

MINIMAL = {"default_tier": "always_approve", "actions": {"read_*": "unrestricted", "delete_*": "blocked"}}


def test_minimal_policy_shape_decides_by_glob_and_defaults_closed() -> None:
    engine = PolicyEngine(MINIMAL)
    assert engine.tier_for("read_file").tier is ActionTier.UNRESTRICTED
    assert engine.tier_for("delete_branch").tier is ActionTier.BLOCKED
    unknown = engine.tier_for("launch_rocket")
    assert unknown.tier is ActionTier.ALWAYS_APPROVE
    assert unknown.rule is None
    assert "default tier" in unknown.describe("launch_rocket")


def test_default_tier_is_always_approve_when_policy_says_nothing() -> None:
    assert PolicyEngine({}).tier_for("anything").tier is ActionTier.ALWAYS_APPROVE


def test_exact_name_beats_glob_and_longer_literal_glob_beats_shorter() -> None:
    engine = PolicyEngine(
        {
            "actions": {
                "*": "blocked",
                "delete_*": "always_approve",
                "delete_tmp_*": "auto_approve",
                "delete_tmp_cache": "unrestricted",
            }
        }
    )
    assert engine.tier_for("delete_tmp_cache").rule == "delete_tmp_cache"
    assert engine.tier_for("delete_tmp_logs").rule == "delete_tmp_*"
    assert engine.tier_for("delete_repo").rule == "delete_*"
    assert engine.tier_for("read").rule == "*"


def test_matching_is_case_sensitive() -> None:
    assert PolicyEngine({"actions": {"read_*": "unrestricted"}}).tier_for("READ_x").rule is None


def test_yaml_file_loads_the_same_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('default_tier: always_approve\nactions:\n  "read_*": unrestricted\n  "delete_*": blocked\n')
    assert load_policy(path) == Policy.model_validate(MINIMAL)
    assert load_policy(path).digest() == Policy.model_validate(MINIMAL).digest()


def test_invalid_policy_lists_every_problem_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text('default_tier: sometimes\nactions:\n  "read_*": unrestricted\n  "drop_*": nope\nextra: 1\n')
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    problems = caught.value.errors
    assert len(problems) == 3
    assert any(p.startswith("line 1: default_tier: unknown tier 'sometimes'") for p in problems)
    assert any(p.startswith("line 4: actions.drop_*: unknown tier 'nope'") for p in problems)
    assert any(p.startswith("line 5: extra: unknown key") for p in problems)


def test_unreadable_and_malformed_policies_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("actions: [unclosed\n")
    with pytest.raises(PolicyError, match="not valid YAML at line"):
        load_policy(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- read\n")
    with pytest.raises(PolicyError, match="must be a mapping"):
        load_policy(listed)


_names = st.text(alphabet="abcd_*?", min_size=1, max_size=6)


@given(
    patterns=st.dictionaries(_names, st.sampled_from(list(ActionTier)), max_size=6),
    action=st.text(alphabet="abcd_", min_size=1, max_size=6),
)
def test_decision_equals_reference_most_specific_match(patterns: dict[str, ActionTier], action: str) -> None:
    """Reference: exact entry, else the matching glob with most literal characters, then longest, then first."""
    patterns = {p: t for p, t in patterns.items() if p.strip() == p}
    engine = PolicyEngine({"default_tier": "blocked", "actions": patterns})
    if action in patterns and not any(ch in action for ch in "*?[]"):
        expected: tuple[ActionTier, str | None] = (patterns[action], action)
    else:
        matching = [
            (i, p) for i, p in enumerate(patterns) if any(ch in p for ch in "*?[]") and fnmatch.fnmatchcase(action, p)
        ]
        if matching:
            _, best = min(matching, key=lambda ip: (-len(ip[1].replace("*", "").replace("?", "")), -len(ip[1]), ip[0]))
            expected = (patterns[best], best)
        else:
            expected = (ActionTier.BLOCKED, None)
    choice = engine.tier_for(action)
    assert (choice.tier, choice.rule) == expected


def test_unknown_nested_keys_name_the_keys_allowed_there() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(
            {
                "agents": {"registry": {"bot": {"bogus": 1}}},
                "risk": {"rules": [{"level": "low", "x": 1, "when": {"field": "action", "exists": True}}]},
            }
        )
    assert (
        "agents.registry.bot.bogus: unknown key (expected one of capabilities, scopes, actions)" in caught.value.errors
    )
    assert "risk.rules.0.x: unknown key (expected one of when, level)" in caught.value.errors
