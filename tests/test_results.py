"""metrics.json, curves, aggregation over seeds, the summary table and the README section."""

import json

import pytest

from common.analysis import grid_time, timing
from common.config import make_config
from common.files import read_json
from common.plots import curve_path, plot_curves, save_curves
from common.readme import HEADLINE_END, HEADLINE_START, README_END, README_START, replace_between
from common.report import (
    Call,
    NotProduced,
    grid_time_line,
    summary_table,
    weights_line,
    write_report,
)
from common.results import (
    REQUIRED_KEYS,
    group_conditions,
    is_complete,
    load_metrics,
    make_metrics,
    stamp,
)
from common.runner import save_run
from tests.conftest import REPO, fake_result


def metrics_for(tmp_path, model="resnet18", fraction=1.0, seed=0, acc=0.5, pretrained=False):
    cfg = make_config(
        model=model,
        data_fraction=fraction,
        seed=seed,
        profile="quick",
        pretrained=pretrained,
        output_dir=str(tmp_path / f"{model}{fraction}{seed}"),
    )
    return make_metrics(cfg, fake_result(acc))


def test_save_run_writes_documented_keys_and_pngs(tmp_path):
    cfg = make_config(
        model="resnet50", data_fraction="1/16", profile="quick", output_dir=str(tmp_path / "run")
    )
    metrics = save_run(cfg, fake_result())
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(REQUIRED_KEYS) <= set(saved) and saved == metrics
    assert set(saved["history"][0]) >= {"epoch", "train_loss", "train_acc", "val_loss", "val_acc"}
    assert saved["data_fraction"] == 1 / 16 and saved["profile"] == "quick"
    assert saved["torch"] and saved["torchvision"] and saved["device"] == "cpu"
    for name in ("acc.png", "loss.png"):
        assert (tmp_path / "run" / name).read_bytes()[:4] == b"\x89PNG"
    assert load_metrics(tmp_path / "run") == saved


def test_incomplete_or_corrupt_metrics_are_not_done(tmp_path):
    (tmp_path / "metrics.json").write_text('{"model": "resnet18"')
    assert load_metrics(tmp_path) is None and read_json(tmp_path / "metrics.json") is None
    assert not is_complete({"model": "resnet18"})


def test_curves_use_the_seed_names(tmp_path):
    runs = [metrics_for(tmp_path, fraction=1 / 16)]
    paths = save_curves(runs, tmp_path / "images")
    assert [p.relative_to(tmp_path) for p in paths] == [
        tmp_path.joinpath("images/from-scratch/resnet18_acc_1-16.png").relative_to(tmp_path),
        tmp_path.joinpath("images/from-scratch/resnet18_loss_1-16.png").relative_to(tmp_path),
    ]
    assert (
        curve_path("images", "pretrained", "resnext50_32x4d", 1.0, "acc").as_posix()
        == "images/finetune/resnext50_32x4d_acc_100.png"
    )


def test_seeds_aggregate_to_mean_and_sample_sd(tmp_path):
    runs = [metrics_for(tmp_path, seed=s, acc=a) for s, a in enumerate((0.50, 0.52, 0.54))]
    [cell] = group_conditions(runs)
    mean, sd, n = cell.stat("test_acc")
    assert (mean, n) == (pytest.approx(0.52), 3) and sd == pytest.approx(0.02)
    table = summary_table([cell], {})
    assert "52.00 ± 2.00 (n=3)" in table and "85.13" in table  # starting point beside ours
    save_curves(cell.runs, tmp_path / "images")  # the band over three seeds draws


def test_one_seed_says_so_and_shows_no_spread(tmp_path):
    [cell] = group_conditions([metrics_for(tmp_path / "one", model="resnet34", acc=0.61)])
    table = summary_table([cell], {})
    assert "| 61.00 (n=1) |" in table and "±" not in table


def test_summary_lists_cells_that_could_not_run(tmp_path):
    table = summary_table([], {("pretrained", "resnet50", 1.0): NotProduced(failed="OOM")})
    assert "| ResNet-50 | 100% | pretrained |" in table
    assert "not produced: failed: OOM" in table and "88.47" in table
    # the cells that need weights not found on this machine: one line, not a row each
    no_weights = {
        ("pretrained", m, f): NotProduced(weights=f"{m}.pth")
        for m in ("resnet18", "resnet50")
        for f in (1 / 16, 0.5, 1.0)
    }
    table = summary_table([], no_weights)
    assert "| pretrained |" not in table
    (line,) = [t for t in table.splitlines() if "not produced" in t]
    assert line == (
        "- not produced: needs ImageNet weights: 6 pretrained cells (ResNet-18 at 1/16, 50%, "
        "100%; ResNet-50 at 1/16, 50%, 100%) need resnet18.pth, resnet50.pth, not found on this "
        "machine."
    )
    one = {("pretrained", "resnet50", 1.0): NotProduced(weights="resnet50.pth")}
    assert weights_line(one) == (
        "not produced: needs ImageNet weights: 1 pretrained cell (ResNet-50 at 100%) needs "
        "resnet50.pth, not found on this machine."
    )


def test_grid_time_puts_each_run_on_the_first_free_device_longest_first():
    times = [30, 20, 20, 10, 10, 10]
    assert grid_time(times, 1) == 100
    assert grid_time(times, 2) == 50  # 30+10+10 | 20+20+10
    assert grid_time(times, 8) == 30  # never below the longest run
    assert grid_time([7, 7, 6, 5, 5], 2) == 17  # a heuristic: the best split gives 16


def timed(tmp_path, seed, start, wall, device="cpu"):
    """A run that trained `wall` seconds from `start` (seconds after an arbitrary moment)."""
    m = metrics_for(tmp_path, seed=seed)
    m.update(started_at=stamp(1e9 + start), finished_at=stamp(1e9 + start + wall))
    return dict(m, wall_time_s=wall, device=device)


def test_grid_time_line_counts_its_runs_in_words(tmp_path):
    [one] = group_conditions([timed(tmp_path, 0, 0, 12)])
    assert grid_time_line(timing(one.runs)).startswith("Grid time: the run above trained for 12 s")
    [two] = group_conditions([timed(tmp_path, 0, 0, 12), timed(tmp_path, 1, 12, 12)])
    line = grid_time_line(timing(two.runs))
    assert line.startswith("Grid time: the 2 runs above trained for 24 s")
    assert "the 2 runs that had their device to themselves trained for 24 s in all" in line
    assert "2 devices 12 s" in line


def test_runs_that_shared_a_device_stay_out_of_the_one_device_time(tmp_path):
    # --jobs 2 on one device: two 50 s runs side by side, each stretched to 100 s
    runs = [timed(tmp_path, 0, 0, 100), timed(tmp_path, 1, 0, 100), timed(tmp_path, 2, 100, 60)]
    [cell] = group_conditions(runs)
    line = grid_time_line(timing(cell.runs), elapsed=170.0, trained=3)
    assert line.startswith("Grid time: the call that trained 3 of the 3 runs above took 2.8 min")
    assert "2 of them shared their device with another run at the same time" in line
    assert "the run that had its device to itself trained for 60 s in all" in line
    # the same runs on two GPUs of one machine had their devices to themselves
    apart = [timed(tmp_path, 0, 0, 50, "cuda:0"), timed(tmp_path, 1, 0, 50, "cuda:1")]
    [cell] = group_conditions(apart)
    line = grid_time_line(timing(cell.runs))
    assert "shared" not in line and "trained for 50 s, the time during which" in line
    assert "trained for 1.7 min in all" in line and "2 devices 50 s" in line


def test_curves_of_one_epoch_have_one_whole_epoch_tick(tmp_path):
    fig = plot_curves([dict(metrics_for(tmp_path), **fake_result(epochs=1))], "acc")
    fig.canvas.draw()
    ax = fig.axes[0]
    left, right = ax.get_xlim()
    assert [t for t in ax.get_xticks() if left <= t <= right] == [1]


def test_readme_section_is_replaced_between_markers():
    text = f"intro\n{README_START}\nold\n{README_END}\noutro\n"
    new = replace_between(text, "new", README_START, README_END)
    assert new == f"intro\n{README_START}\nnew\n{README_END}\noutro\n"
    assert replace_between("intro", "b", "<a>", "</a>").endswith("<a>\nb\n</a>\n")


def test_report_writes_summary_curves_and_readme(tmp_path):
    out = tmp_path / "runs"
    for fraction in (1 / 16, 0.5, 1.0):
        m = metrics_for(tmp_path, fraction=fraction)
        run_dir = out / "scratch" / f"r{fraction}"
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.json").write_text(json.dumps(m))
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{HEADLINE_START}\n{HEADLINE_END}\n{README_START}\n{README_END}\n")
    missing = {("pretrained", "resnet18", 1.0): NotProduced(weights="resnet18-f37072fd.pth")}
    summary = write_report(
        out,
        tmp_path / "images",
        tmp_path / "results",
        readme,
        "quick",
        Call("python run_all.py", missing=missing),
    )
    assert summary.read_text().count("| ResNet-18 |") == 3  # the missing cell: a line below
    text = readme.read_text()
    assert "images/from-scratch/resnet18_acc_50.png" in text and "Quick profile" in text
    assert "not produced: needs ImageNet weights" in text
    # paths relative to the repository, never this machine's
    assert "Data: CIFAR-10 from `data/`: " in text and str(REPO) not in text
    headline = text.split(HEADLINE_START)[1].split(HEADLINE_END)[0]
    assert "profile `quick`" in headline and "A pipeline check, not a result" in headline
    # the source notebooks' full-training figures sit beside full-profile rows only
    assert "| ResNet-18 | 100% | 50.00 (n=1) | not produced |" in headline
    assert "85.13" not in headline
    assert len(list((tmp_path / "images" / "from-scratch").glob("*.png"))) == 6


def test_a_report_builds_its_analysis_once_and_fits_each_line_once(tmp_path, monkeypatch):
    import common.analysis as analysis

    calls = {"build": 0, "analyse": 0}
    build, analyse = analysis.build, analysis.analyse

    def counted(name, f):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return f(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(analysis, "build", counted("build", build))
    monkeypatch.setattr(analysis, "analyse", counted("analyse", analyse))
    out = tmp_path / "runs"
    for fraction in (1 / 16, 0.5, 1.0):
        for seed in (0, 1):
            m = metrics_for(tmp_path, fraction=fraction, seed=seed, acc=0.5 + fraction / 4)
            m.update(profile="full", config=dict(m["config"], profile="full"))
            m.update(train_images=int(45_000 * fraction), test_acc=m["test_acc"] + seed / 100)
            (out / "scratch" / f"r{fraction}{seed}").mkdir(parents=True)
            (out / "scratch" / f"r{fraction}{seed}" / "metrics.json").write_text(json.dumps(m))
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n{HEADLINE_START}\n{HEADLINE_END}\n{README_START}\n{README_END}\n")
    write_report(out, tmp_path / "i", tmp_path / "r", readme, "full", Call("c"))
    assert calls == {"build": 1, "analyse": 1}  # one line (ResNet-18 from scratch), fitted once
    assert "AICc (" in readme.read_text()


def test_a_committed_old_record_is_read_through_the_one_converter():
    from common.results import SCHEMA, moment, variant

    folder = REPO / "results/runs-full-nvidia-h200/scratch/resnet18_data-100_seed0"
    raw = read_json(folder / "metrics.json")
    assert "schema" not in raw and "started_at" not in raw  # written before both existed
    m = load_metrics(folder)
    assert m["schema"] == SCHEMA and m["test_tta"] == "none" and m["machine"] is None
    assert (m["device_name"], m["device"]) == (raw["device"], "cuda")
    assert moment(m["finished_at"]) - moment(m["started_at"]) == pytest.approx(
        raw["wall_time_s"], abs=1e-3
    )
    # the former recipe, as its own configuration records it (settings that did not exist: off)
    former = dict(variant(m))
    assert (former["cutout"], former["pad_mode"], former["tta"]) == (0, "zeros", "none")
    assert load_metrics(folder) == m and read_json(folder / "metrics.json") == raw  # untouched
