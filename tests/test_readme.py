"""The README's usage snippet runs as written (against the example policy, in a fresh directory)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_usage_snippet_runs(tmp_path: Path) -> None:
    snippet = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    shutil.copy(ROOT / "examples" / "policy.yaml", tmp_path / "policy.yaml")
    checked = snippet + (
        "\nbudget = cp.get_remaining_budget(sid)\n"
        "assert budget['remaining_cost'] == Decimal('49.8') and budget['remaining_count'] == 99, budget\n"
        "assert report.ok and [e.seq for e in events] == list(range(1, len(events) + 1))\n"
    )
    script = tmp_path / "snippet.py"
    script.write_text(checked.replace("cp.close_session(sid); cp.close()", "cp.close_session(sid)") + "cp.close()\n")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_readme_token_budget_snippet_runs_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (snippet,) = [block for block in blocks if "token_budget_tracker" in block]
    script = tmp_path / "tokens.py"
    script.write_text(snippet)
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    allowed, remaining = result.stdout.split(" ", 1)
    assert allowed == "True" and "Decimal('4.9958')" in remaining
    assert (tmp_path / "tenants.db").exists()
