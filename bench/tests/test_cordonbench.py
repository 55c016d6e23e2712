"""The benchmark's pure helpers: percentiles, hey parsing, table rendering, RESULTS.md section handling."""

import pytest
from cordonbench.loadgen import parse_hey
from cordonbench.report import BEGIN, END, Metric, replace_section, summary_table
from cordonbench.stats import fmt_num, fmt_ratio, percentile, render_markdown

HEY = """
Summary:
  Total:\t2.0023 secs
  Slowest:\t0.0200 secs
  Fastest:\t0.0001 secs
  Requests/sec:\t1234.5000

Latency distribution:
  10% in 0.0005 secs
  50% in 0.0012 secs
  99% in 0.0040 secs

Status code distribution:
  [200]\t2469 responses
  [502]\t3 responses

Error distribution:
  [2]\tGet "https://bench.test/small": EOF
"""


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile([3, 1, 2], 0) == 1
    assert percentile([3, 1, 2], 100) == 3
    assert percentile(list(range(101)), 99) == pytest.approx(99)
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_parse_hey_summary() -> None:
    res = parse_hey(HEY)
    assert res.rps == 1234.5
    assert res.p50 == 0.0012
    assert res.p99 == 0.004
    assert res.ok == 2469
    assert res.errors == 5  # 3 non-200 responses + 2 transport errors


def test_parse_hey_few_responses_falls_back_to_slowest() -> None:
    text = HEY.replace("  99% in 0.0040 secs", "  0% in 0.0000 secs")
    assert parse_hey(text).p99 == 0.02
    with pytest.raises(ValueError):
        parse_hey("hey: connection refused")


def test_render_markdown_aligns_and_checks_width() -> None:
    out = render_markdown(["a", "long header"], [["1", "2"], ["333", "4"]]).splitlines()
    assert out[0] == "| a   | long header |"
    assert out[1].startswith("|-----|")
    assert out[3] == "| 333 | 4           |"
    with pytest.raises(ValueError):
        render_markdown(["a"], [["1", "2"]])


def test_formatting() -> None:
    assert fmt_num(12345.6) == "12,346"
    assert fmt_num(0.1234) == "0.123"
    assert fmt_num(None) == "—"
    assert fmt_ratio(12.34) == "12.3×"
    assert fmt_ratio(None) == "—"


def test_metric_advantage_and_verdict_in_summary() -> None:
    rps = Metric("rps", "req/s", "req/s", True, target="≥10× mitmproxy",
                 check=lambda d: d["cordon"] >= 10 * d["mitmproxy"])
    lat = Metric("lat", "added", "ms", False, target="≤ 0.3", check=lambda d: d["cordon"] <= 0.3)
    for v in (3000, 3300, 2900):
        rps.add("cordon", v)
    rps.add("mitmproxy", 300)
    lat.add("cordon", 0.5)
    lat.add("mitmproxy", 2.0)
    lat.add("direct", None)
    assert rps.med("cordon") == 3000
    assert rps.advantage("mitmproxy") == 10
    assert lat.advantage("mitmproxy") == 4  # lower is better: 2.0 / 0.5
    assert rps.verdict() == "yes"
    assert lat.verdict() == "**no**"
    table = summary_table([rps, lat], ["cordon", "mitmproxy"])
    assert "cordon vs mitmproxy" in table
    assert "10.0×" in table and "4.00×" in table


def test_replace_section_keeps_other_sections() -> None:
    theirs = "# Benchmark results\n\n## Leaf issuance (cordon-ca)\n\nfigures\n"
    once = replace_section(theirs, "## Proxy\n\nv1")
    assert once.startswith(theirs.rstrip("\n"))
    assert BEGIN in once and END in once and "v1" in once
    twice = replace_section(once + "\n## Later section\n", "## Proxy\n\nv2")
    assert "v1" not in twice and "v2" in twice
    assert "## Leaf issuance (cordon-ca)" in twice and "## Later section" in twice
    assert twice.count(BEGIN) == 1
    assert replace_section("", "## Proxy").startswith("# Benchmark results")


def test_hey_ok_rps_counts_only_200s() -> None:
    res = parse_hey(HEY)
    assert res.total == 2.0023
    assert res.ok_rps == pytest.approx(2469 / 2.0023)


def test_policy_section_compares_cordon_with_cordon_bare() -> None:
    import run

    cpu = Metric("cpu", "proxy CPU per request (hey)", "ms", False)
    stream = Metric("mb_routed", "/big 16 MiB, routed (MITM)", "MB/s", True)
    for value_on, value_off in ((0.110, 0.100), (0.108, 0.100)):
        cpu.add("cordon", value_on)
        cpu.add(run.BARE, value_off)
    stream.add("cordon", 450.0)
    stream.add(run.BARE, 520.0)
    text = run.policy_section([cpu, stream])
    assert "| proxy CPU per request (hey) (ms) | 0.109 | 0.100 | +9.0% (+10%, +8%) | ≤ +10% CPU per request | yes |" \
        in text
    assert "| /big 16 MiB, routed (MITM) (MB/s) | 450 | 520 | -13.5% (-13%) | within 10% | **no** |" in text
    assert "not measured" in run.policy_section([Metric("cpu", "x", "ms", False)])
