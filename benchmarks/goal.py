"""The one way every benchmark states a goal: a final line `goal <name>: <measured> (goal <target>) MET|MISSED`."""

from __future__ import annotations


def goal_line(name: str, measured: str, target: str, met: bool) -> str:
    line = f"goal {name}: {measured} (goal {target}) {'MET' if met else 'MISSED'}"
    print(line)
    return line
