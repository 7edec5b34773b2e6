"""The metrics.json schema, grouping runs into conditions, and the summary's pieces, on records
made by make_metrics from fake results."""

import json
import re
from pathlib import Path

from common.analysis import build
from common.config import make_config, train_images
from common.files import read_json
from common.report import (
    HEADLINE_END,
    HEADLINE_START,
    README_END,
    README_START,
    SCHEMA,
    NotProduced,
    collect,
    curve_path,
    grid_time_line,
    images_title,
    keeps_full,
    load_metrics,
    make_metrics,
    plot_curves,
    provenance,
    replace_between,
    stamp,
    summary_table,
    variant,
)
from common.runner import save_run
from tests.conftest import REPO, fake_result

COMMITTED = REPO / "results/runs-full-nvidia-h200"


def record(fraction=1.0, seed=0, acc=0.5, model="resnet18", profile="full", when=None, **sets):
    """A run's metrics.json record; `when`: its finish, in seconds after an arbitrary moment."""
    pretrained = sets.pop("pretrained", False)
    cfg = make_config(model, fraction, pretrained, seed, profile, output_dir="/nowhere", **sets)
    n = train_images(fraction)
    m = make_metrics(cfg, dict(fake_result(acc), train_images=n, steps_per_epoch=n // 512))
    if when is not None:
        m.update(started_at=stamp(1e9 + when - 12), finished_at=stamp(1e9 + when))
    return m


def test_a_saved_run_reads_back_and_incomplete_or_older_records_do_not(tmp_path):
    cfg = make_config("resnet50", "1/16", profile="quick", output_dir=str(tmp_path / "run"))
    saved = save_run(cfg, fake_result())
    assert load_metrics(tmp_path / "run") == saved == read_json(tmp_path / "run/metrics.json")
    assert saved["schema"] == SCHEMA and saved["data_fraction"] == 1 / 16
    assert all(
        (tmp_path / "run" / f).read_bytes()[:4] == b"\x89PNG" for f in ("acc.png", "loss.png")
    )
    (tmp_path / "run/metrics.json").write_text(json.dumps(dict(saved, schema=1)))
    assert load_metrics(tmp_path / "run") is None  # an older schema: converted once, by a script
    (tmp_path / "run/metrics.json").write_text('{"model": "resnet18"')
    assert load_metrics(tmp_path / "run") is None


def test_the_committed_runs_are_todays_schema_with_portable_paths():
    runs = collect(COMMITTED, "full")
    assert len(runs) == 18 and {m["schema"] for m in runs} == {SCHEMA}
    former = dict(variant(runs[0]))  # the former recipe, as its own configuration records it
    assert (former["cutout"], former["pad_mode"], former["tta"]) == (0, "zeros", "none")
    for path in COMMITTED.glob("*/*/metrics.json"):
        assert not re.search(r'"/(work|root|tmp|home)/', path.read_text()), path
    outside = make_config(profile="quick", data_dir="/elsewhere/d", output_dir="/elsewhere/r")
    assert make_metrics(outside, fake_result())["config"]["data_dir"] == "../d"  # beside the run
    gpu = make_metrics(outside, dict(fake_result(), device="cuda:3", device_name="NVIDIA H200"))
    assert (gpu["device"], gpu["hardware"]) == ("cuda:3", "NVIDIA H200 (GPU)")  # its own GPU


def test_quick_runs_say_how_many_images_they_saw_beside_their_subset():
    quick = make_config("resnet18", 1.0, profile="quick", output_dir="/nowhere")
    m = make_metrics(quick, dict(fake_result(epochs=4), train_images=45_000, steps_per_epoch=16))
    assert images_title(m) == f"{4 * 16 * quick.batch_size:,} images seen, drawn from 45,000"
    assert images_title(record(1 / 16)) == f"{train_images(1 / 16):,} images"


def test_the_main_configuration_is_that_of_most_runs_and_other_weights_are_kept_apart():
    old = [record(f, s, 0.2, lr=0.01, when=1) for f in (1 / 16, 1.0) for s in (0, 1)]
    new = [record(f, s, 0.6, when=2) for f in (1 / 16, 1.0) for s in (0, 1)]
    assert variant(old[0]) == (("lr", 0.01),) and variant(new[0]) == ()
    stray = record(1.0, 0, 0.9, epochs=1, when=3)  # a later notebook run
    tuned = [
        record(model="resnet50", pretrained=True, weights=w, when=4 + i)
        for i, w in enumerate(("V1", "V2"))
    ]
    a = build([*old, *new, stray, *tuned], "full")
    assert {r["test_acc"] for c in a.cells if c.setting == "scratch" for r in c.runs} == {0.6}
    labels = {c.setting: c.label for c in a.rows if c.variant == (("lr", 0.01),)}
    assert labels == {"scratch": "epochs: recipe, lr=0.01"}  # what tells it from the others
    assert {c.label for c in a.rows if c.setting == "pretrained"} == {""}  # one configuration
    assert [c.weights for c in a.drawn if c.setting == "pretrained"] == ["ImageNet V2"]


def test_the_summary_table_shows_seeds_failures_and_missing_weights():
    runs = [record(seed=s, acc=a) for s, a in enumerate((0.50, 0.52, 0.54))]
    runs += [record(model="resnet34", acc=0.61), record(model="resnet34", pretrained=True)]
    failed = {("scratch", "resnet18", 1.0): {3: "TrainingError: diverged"}}
    missing = {
        ("pretrained", m, 1.0): NotProduced(weights=f"{m}.pth") for m in ("resnet18", "resnet50")
    }
    missing[("pretrained", "resnext50_32x4d", 1.0)] = NotProduced(failed="OOM")
    text = summary_table(a := build(runs, "full", missing, failed))
    assert "52.00 ± 2.00 (n = 3 of 4: seed 3 failed: TrainingError: diverged)" in text
    assert "| 61.00 (n=1) |" in text and "not produced: failed: OOM" in text
    said = provenance(a, "", REPO)  # the weights found, and the cells without theirs
    assert "Fine-tuned from: ImageNet V1." in said
    assert "2 pretrained cells (ResNet-18 at 100%; ResNet-50 at 100%)" in said


def test_grid_time_is_measured_or_read_from_the_records():
    runs = [record(seed=0, when=100), record(seed=1, when=150)]  # 12 s each, apart
    assert grid_time_line(runs).startswith("Grid time: the 2 runs above trained for 24 s")
    assert "took 2.8 min" in grid_time_line(runs, elapsed=170.0, trained=2)


def test_curves_use_the_seed_names_and_one_epoch_has_one_tick(tmp_path):
    path = curve_path(tmp_path, "scratch", "resnet18", 1 / 16, "acc")
    assert path.relative_to(tmp_path).as_posix() == "from-scratch/resnet18_acc_1-16.png"
    fig = plot_curves([dict(record(), **fake_result(epochs=1))], "acc")
    fig.canvas.draw()
    (left, right), ticks = fig.axes[0].get_xlim(), fig.axes[0].get_xticks()
    assert [t for t in ticks if left <= t <= right] == [1]


def test_readme_sections_are_replaced_between_markers_and_a_quick_report_keeps_full_ones(
    tmp_path: Path,
):
    text = f"intro\n{README_START}\nold\n{README_END}\noutro\n"
    new = replace_between(text, "new", README_START, README_END)
    assert new == f"intro\n{README_START}\nnew\n{README_END}\noutro\n"
    assert replace_between("intro", "b", HEADLINE_START, HEADLINE_END).endswith(
        "-->\nb\n<!-- headline:end -->\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text(replace_between("", "_Generated: profile `full`_", README_START, README_END))
    assert keeps_full(readme, "quick") and not keeps_full(readme, "full")


def test_the_conversion_script_makes_a_record_of_today_from_an_older_one(tmp_path):
    namespace: dict = {"__file__": str(tmp_path / "convert.py")}  # converts nothing under it
    exec(compile((COMMITTED / "convert.py").read_text(), "convert.py", "exec"), namespace)
    today = json.loads(json.dumps(record(when=100)))
    older = {k: v for k, v in today.items() if k not in ("schema", "started_at", "parameters")}
    older.update(device="NVIDIA H200", config={**today["config"], "cutout": 0})
    for key in ("test_tta", "machine", "device_name"):
        del older[key]
    for key in namespace["FORMER"]:
        del older["config"][key]
    new = namespace["convert"](older)
    assert (new["device"], new["device_name"], new["schema"]) == ("cuda", "NVIDIA H200", SCHEMA)
    assert (new["started_at"], new["parameters"]) == (today["started_at"], today["parameters"])
    assert namespace["convert"](today) == today
