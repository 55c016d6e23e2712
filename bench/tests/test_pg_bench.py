"""bench/pg.py's pure helpers: the comparison column, the table and its RESULTS.md section."""

import importlib.util
import sys
from pathlib import Path

spec = importlib.util.spec_from_file_location("cordon_pg_bench", Path(__file__).resolve().parents[1] / "pg.py")
assert spec is not None and spec.loader is not None
pgbench = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = pgbench  # dataclasses look their module up
spec.loader.exec_module(pgbench)


def results() -> object:
    r = pgbench.Results()
    for value, target in ((1000.0, "cordon"), (800.0, "pgbouncer")):
        r.add("tps_select", target, value)
    for value, target in ((0.5, "cordon"), (0.25, "pgbouncer")):
        r.add("added50_select", target, value)
    r.add("cpu_select", "cordon", 40.0)
    r.add("cpu_select", "pgbouncer", 50.0)
    return r


def test_vs_reads_as_cordon_better_above_one() -> None:
    r = results()
    assert pgbench.vs(r, "tps_select", True, "cordon", "pgbouncer") == "1.25×"
    assert pgbench.vs(r, "cpu_select", False, "cordon", "pgbouncer") == "1.25×"
    assert pgbench.vs(r, "added50_select", False, "cordon", "pgbouncer") == "+0.250 ms"
    assert pgbench.vs(r, "tps_tpcb", True, "cordon", "pgbouncer") == "—"


def test_table_has_every_figure_and_target() -> None:
    text = pgbench.table(results())
    assert text.count("\n") == len(pgbench.FIGURES) + 1
    for target in pgbench.TARGETS:
        assert f" {target} " in text.splitlines()[0]


def test_write_section_replaces_only_its_own_block(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark results\n\nthe HTTP bench's section\n", encoding="utf-8")
    pgbench.write_section(out, "## PostgreSQL\n\nfirst\n")
    pgbench.write_section(out, "## PostgreSQL\n\nsecond\n")
    text = out.read_text(encoding="utf-8")
    assert "the HTTP bench's section" in text and "second" in text and "first" not in text
    assert text.count(pgbench.BEGIN) == 1
