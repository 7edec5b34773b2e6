"""The analysis record on synthetic grids: the tested claims with Holm, what is not tested, the
fits' tables, the scaling figures and the scaling notebook's code (papermill: test_run_all)."""

from __future__ import annotations

import nbformat

from common.analysis import build, claims, fits, write_scaling
from common.files import write_json
from common.runner import NOTEBOOKS
from tests.test_results import record

FRACTIONS = (1 / 16, 0.5, 1.0)


def grid(profile: str = "full", seeds: int = 2) -> list[dict]:
    """Both settings, both models, three sizes; error falls with size, fine-tuning adds 5."""
    out = []
    for _, bonus in (("scratch", 0.0), ("pretrained", 0.05)):
        for model, edge in (("resnet18", 0.0), ("resnet50", 0.02)):
            for f in FRACTIONS:
                for s in range(seeds):
                    err = 3 * (45_000 * f) ** -0.4 + 0.05 - bonus - edge + 0.002 * s
                    out.append(record(f, s, 1 - err, model, profile, pretrained=bonus > 0))
    return out


def gains(fraction: float, diffs: list[float]) -> list[dict]:
    """ResNet-50 `diffs[s]` above ResNet-18 in seed s, over seeds far apart."""
    base = [0.60, 0.70, 0.80, 0.65]
    pairs = enumerate(zip(base, diffs, strict=True))
    return [record(fraction, s, a) for s, a in enumerate(base)] + [
        record(fraction, s, a + d, "resnet50") for s, (a, d) in pairs
    ]


def test_holm_over_three_comparisons_removes_one_that_holds_alone():
    runs = gains(1 / 16, [0.020, 0.021, 0.022, 0.023])  # clear
    runs += gains(0.5, [0.002, 0.012, 0.006, 0.010])  # p < 0.05 alone, not after Holm
    runs += gains(1.0, [0.010, -0.010, 0.005, -0.004])  # no difference
    a = build(runs, "full")
    assert [c["p"] < 0.05 for c in a.comparisons] == [True, True, False]
    assert [c["p_holm"] < 0.05 for c in a.comparisons] == [True, False, False]
    text = claims(a)
    assert "Holm's correction over the report's 3 tests" in text
    assert text.count("not a clear difference") == 2 and text.count("beyond seed noise") == 1
    assert "| ResNet-50 − ResNet-18, from scratch, 1/16 (2,812 images) | +2.15 |" in text


def test_a_full_grid_claims_the_pretraining_gap_and_fits_every_line():
    a = build(grid(), "full")
    text = claims(a)
    assert text.count("fine-tuned − from scratch") == 6 and text.count("| +5.00 |") == 6
    assert "The power-law form: 3 sizes for 3 parameters" in text  # said once, not per line
    assert "`--fractions 1/16,1/8,25%,50%,100%` would test it" in text
    assert "joint fit over data and model size, from scratch: 2 model sizes" in text
    table = fits(a)
    assert table.count("| 6 | ") == 4 and table.count("| 2,812, 22,500 | 45,000 |") == 4
    single = claims(build([record(seed=0), record(seed=0, model="resnet50", acc=0.9)], "full"))
    assert "None." in single and "100% (45,000 images): one seed on a side." in single


def test_the_figures_that_apply_are_drawn_and_plot_what_their_axes_say(tmp_path):
    names = lambda paths: [p.name for p in paths]  # noqa: E731
    full = write_scaling(build(grid(), "full"), tmp_path)
    assert names(full) == ["error_vs_data.png", "pretrained_gap.png"]
    scratch = [r for r in grid("quick") if not r["pretrained"]]
    quick = build(grid("quick"), "quick")  # a pipeline check: nothing claimed or fitted
    assert not quick.comparisons and not quick.curves and fits(quick) == ""
    assert claims(quick).split("### Not tested\n\n- ")[1].startswith("Everything: quick runs")
    assert names(write_scaling(build(scratch, "quick"), tmp_path)) == names(full)[:1]
    from common.analysis import plot_error_vs_data

    fig = plot_error_vs_data(build(scratch[::2], "quick"))
    ax = fig.axes[0]
    assert "test error" in ax.get_ylabel() and "not how many a quick run saw" in ax.get_xlabel()
    assert all(0 < y < 100 for line in ax.lines for y in line.get_ydata())
    assert fig.legends and not ax.get_legend()  # the legend sits outside the data


def test_the_scaling_notebooks_code_draws_and_renders_the_analysis(tmp_path):
    from IPython.display import Markdown

    path = NOTEBOOKS / "scaling.ipynb"  # papermill: tests/test_run_all.py
    for i, m in enumerate(grid()):
        write_json(tmp_path / "runs" / m["setting"] / f"run{i}" / "metrics.json", m)
    shown = []
    scope = dict(output_dir=str(tmp_path / "runs"), images_dir=str(tmp_path / "img"), profile=None)
    for cell in nbformat.read(path, as_version=4).cells[2:]:
        if cell.cell_type == "code":
            exec(cell.source, scope)
            scope["display"] = shown.append  # after the cell that imports IPython's
    assert len(list((tmp_path / "img" / "scaling").glob("*.png"))) == 2
    assert any(isinstance(s, Markdown) and "fine-tuned − from scratch" in s.data for s in shown)
