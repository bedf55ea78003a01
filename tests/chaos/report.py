"""The reliability table: one row per scenario, written as each scenario ends.

Each scenario stores its :class:`Row` as JSON under ``<dir>/rows/``; :func:`write` renders every
stored row (in scenario order) to ``<dir>/report.md`` and prints the table, so a partial run still
leaves the rows it produced. ``make chaos`` leaves it at ``.freshet/chaos/report.md``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

ORDER = ("indexer-kills", "weaviate-outage", "kafka-kill", "searches-during-outage", "hostile-inputs")

HEADER = ("| scenario | status | events | faults injected | bad inputs tried | read-backs | time to recover | "
          "lost / stale / duplicated | wall time |")


@dataclass
class Row:
    scenario: str
    events: int = 0
    faults: str = ""
    bad_inputs: int = 0
    read_backs: int = 0
    recover_seconds: list[float] = field(default_factory=list)
    lost: int = -1
    stale: int = -1
    duplicated: int = -1
    wall_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "pass" if not self.failures else "FAIL"

    def recover_text(self) -> str:
        if not self.recover_seconds:
            return "–"
        last, worst = self.recover_seconds[-1], max(self.recover_seconds)
        if len(self.recover_seconds) == 1:
            return f"{last:.0f} s"
        # faults that follow each other closely: an early one is only recovered from after the last one
        return f"{last:.0f} s after the last of {len(self.recover_seconds)} (max {worst:.0f} s)"

    def markdown(self) -> str:
        counts = "–" if self.lost < 0 else f"{self.lost} / {self.stale} / {self.duplicated}"
        return (f"| {self.scenario} | {self.status} | {self.events:,} | {self.faults} | {self.bad_inputs:,} | "
                f"{self.read_backs:,} | {self.recover_text()} | {counts} | {self.wall_seconds:.0f} s |")


def save(row: Row, directory: Path) -> Path:
    rows = directory / "rows"
    rows.mkdir(parents=True, exist_ok=True)
    path = rows / f"{row.scenario}.json"
    path.write_text(json.dumps({**asdict(row), "status": row.status}, indent=2))
    write(directory)
    return path


def load(directory: Path) -> list[Row]:
    out = []
    for path in sorted((directory / "rows").glob("*.json")):
        raw = json.loads(path.read_text())
        raw.pop("status", None)
        out.append(Row(**raw))
    return sorted(out, key=lambda r: ORDER.index(r.scenario) if r.scenario in ORDER else len(ORDER))


def render(rows: list[Row]) -> str:
    lines = ["# Chaos tier: reliability", "", HEADER, "|" + "---|" * 9]
    lines += [r.markdown() for r in rows]
    for r in rows:
        if r.failures or r.notes:
            lines += ["", f"## {r.scenario}: {r.status}", ""]
            lines += [f"- FAIL: {f}" for f in r.failures]
            lines += [f"- {n}" for n in r.notes]
    return "\n".join(lines) + "\n"


def write(directory: Path) -> str:
    text = render(load(directory))
    (directory / "report.md").write_text(text)
    return text
