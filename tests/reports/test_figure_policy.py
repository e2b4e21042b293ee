"""The committed figures keep to the figure policy, and the check really catches a breach."""

from pathlib import Path

from reports.figure_policy import MAX_FIGURE_BYTES, tracked_figures, violations

ROOT = Path(__file__).resolve().parents[2]


def test_committed_figures_keep_to_the_policy():
    figures = tracked_figures(ROOT)
    assert figures, "the committed report's figures should be found"
    assert violations(ROOT, figures) == []


def test_oversized_or_misplaced_figure_is_named(tmp_path):
    home = tmp_path / "docs" / "reports" / "r" / "figures"
    home.mkdir(parents=True)
    (home / "big.png").write_bytes(b"\0" * (MAX_FIGURE_BYTES + 1))
    (tmp_path / "stray.svg").write_text("<svg/>")
    problems = violations(tmp_path, [Path("docs/reports/r/figures/big.png"), Path("stray.svg")])
    assert len(problems) == 2
    assert "big.png" in problems[0] and "cap" in problems[0]
    assert "stray.svg" in problems[1] and "docs/reports/" in problems[1]
