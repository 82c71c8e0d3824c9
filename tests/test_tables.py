"""Table formatting (bold best, underlined second, paper deltas, p-values) and the Fig. 7 chart, on made-up runs."""

import pandas as pd

from analysis.figures import identity_chart
from analysis.tables import aggregate, build_table, render

RUNS = pd.DataFrame(
    {
        "variant": ["llvfsr", "llvfsr", "srcnn", "srcnn", "bicubic"],
        "scale": [8, 8, 8, 8, 8],
        "seed": [0, 1, 0, 1, 0],
        "psnr": [29.0, 29.2, 26.0, 26.4, 25.0],
        "lpips": [0.10, 0.12, 0.20, 0.22, 0.30],
        "identity": [0.2, 0.3, 0.5, 0.4, 0.7],
    }
)


def test_table_marks_best_and_second_and_shows_paper_deltas():
    stats = aggregate(RUNS, ["variant", "scale"], ["psnr", "lpips", "identity"]).xs(8, level="scale")
    paper = {"llvfsr": (29.35, 0.814, 9.419, 0.1122), "srcnn": (26.42, 0.724, 12.016, 0.2030)}
    table = build_table(stats, ["bicubic", "srcnn", "llvfsr"], ["psnr", "lpips", "identity"], paper, "markdown",
                        {"srcnn": 0.012})  # fmt: skip
    assert table.loc["llvfsr", "PSNR"] == "**29.10 ± 0.14**"  # mean and sample std over two seeds
    assert table.loc["srcnn", "PSNR"] == "<u>26.20 ± 0.28</u>"
    assert table.loc["bicubic", "PSNR"] == "25.00"  # one seed: no std
    assert table.loc["llvfsr", "LPIPS"].startswith("**0.1100")  # lower is better for LPIPS
    assert table.loc["llvfsr", "IDENTITY"].startswith("**0.2500")
    assert table.loc["llvfsr", "PSNR paper"] == "29.35" and table.loc["llvfsr", "PSNR Δ"] == "-0.25"
    assert table.loc["srcnn", "p vs LLV-FSR"] == "0.012" and table.loc["llvfsr", "p vs LLV-FSR"] == "—"
    latex = render(build_table(stats, ["srcnn", "llvfsr"], ["psnr"], None, "latex"), "latex", "t")
    assert "\\textbf{29.10 ± 0.14}" in latex and "\\underline{26.20 ± 0.28}" in latex


def test_identity_chart_writes_a_png(tmp_path):
    identity_chart(RUNS, tmp_path / "fig7.png")
    assert (tmp_path / "fig7.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
