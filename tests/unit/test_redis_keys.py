"""Every Redis key and channel name is written in orchestrator/keys.py and nowhere else in the code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_no_module_but_keys_spells_a_redis_key() -> None:
    spelled = []
    for package in ("orchestrator", "worker", "web"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "keys.py" and path.parent.name == "orchestrator":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if re.search(r"""["']orch:""", line):
                    spelled.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert spelled == [], "Redis key names outside orchestrator/keys.py:\n" + "\n".join(spelled)
