"""Turns per-round measurements into the summary table, the detail table and the RESULTS.md section."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cordonbench.stats import fmt_num, fmt_ratio, median, ratio, render_markdown, spread

PEERS = ("mitmproxy", "proxy.py")
BEGIN = "<!-- bench/run.py: begin (generated, replaced on every run) -->"
END = "<!-- bench/run.py: end -->"
FAIR_BEGIN = "<!-- bench/run.py --fair-share: begin (generated, replaced on every run) -->"
FAIR_END = "<!-- bench/run.py --fair-share: end -->"


@dataclass
class Metric:
    """One row: per-target lists of per-round values, which way is better, and cordon's target."""

    key: str
    label: str
    unit: str
    higher_is_better: bool
    values: dict[str, list[float]] = field(default_factory=dict)
    target: str = ""
    # (per-target medians) -> True/False/None: whether cordon meets its target
    check: Callable[[dict[str, float]], bool | None] | None = None

    def add(self, target: str, value: float | None) -> None:
        """Record one round's figure for ``target`` (None is skipped)."""
        if value is not None:
            self.values.setdefault(target, []).append(value)

    def med(self, target: str) -> float | None:
        """Median over rounds, or None when not measured."""
        vals = self.values.get(target)
        return median(vals) if vals else None

    def advantage(self, peer: str) -> float | None:
        """How many times better cordon is than ``peer`` (>1 = cordon better)."""
        c, p = self.med("cordon"), self.med(peer)
        if c is None or p is None:
            return None
        if self.higher_is_better:
            return ratio(c, p)
        # lower is better; an "added" figure can be ≤ 0, where a ratio says nothing
        if c <= 0 or p <= 0:
            return None
        return ratio(p, c)

    def verdict(self) -> str:
        """``yes``/``no``/``—`` for cordon's target."""
        if self.check is None:
            return "—"
        meds = {t: m for t in self.values if (m := self.med(t)) is not None}
        try:
            ok = self.check(meds)
        except KeyError:
            ok = None
        return "—" if ok is None else ("yes" if ok else "**no**")


def summary_table(metrics: Sequence[Metric], targets: Sequence[str]) -> str:
    """Medians per target, a ``cordon vs <peer>`` column per peer, cordon's target and whether it is met."""
    peers = [p for p in PEERS if p in targets]
    headers = ["figure", *targets, *[f"cordon vs {p}" for p in peers], "target (cordon)", "met"]
    rows = []
    for m in metrics:
        cells = [f"{m.label} ({m.unit})" if m.unit else m.label]
        cells += [fmt_num(m.med(t)) for t in targets]
        cells += [fmt_ratio(m.advantage(p)) for p in peers]
        cells += [m.target or "—", m.verdict()]
        rows.append(cells)
    return render_markdown(headers, rows)


def detail_table(metrics: Sequence[Metric], targets: Sequence[str]) -> str:
    """Median [min–max] over rounds for every figure and target."""
    headers = ["figure", *targets]
    rows = []
    for m in metrics:
        cells = [f"{m.label} ({m.unit})" if m.unit else m.label]
        for t in targets:
            vals = m.values.get(t)
            if not vals:
                cells.append("—")
                continue
            med, lo, hi = spread(vals)
            cells.append(f"{fmt_num(med)} [{fmt_num(lo)}–{fmt_num(hi)}] n={len(vals)}")
        rows.append(cells)
    return render_markdown(headers, rows)


def replace_section(existing: str, section: str, begin: str = BEGIN, end: str = END) -> str:
    """``existing`` with the generated section (between ``begin`` and ``end``) replaced (or appended at the
    end), other sections untouched."""
    block = f"{begin}\n{section.rstrip()}\n{end}\n"
    if begin in existing and end in existing:
        head, rest = existing.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        return head + block + (("\n" + tail) if tail else "")
    if not existing.strip():
        return "# Benchmark results\n\n" + block
    return existing.rstrip("\n") + "\n\n" + block
