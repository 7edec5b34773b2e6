"""Converted these 18 metrics.json files once, in place, to schema 2 (what common/report.py
writes and reads): they were written before the schema version, the recipe settings added for
the cited sources, and the start time existed. Run from the repository root; kept as the record
of what was filled in."""

import json
from datetime import UTC, datetime
from pathlib import Path

from common.models import parameter_count

# The recipe settings added after these runs, at the values these runs trained with (off)
FORMER = dict(
    budget="sqrt",
    cutout=0,
    pad_mode="zeros",
    tta="none",
    mixup=0.0,
    head_init="default",
    resize=None,
    warmup_share=None,
    lr_start_factor=0.0,
    lr_drops=[],
)


def stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def convert(m: dict) -> dict:
    if m.get("schema") == 2:
        return m
    config = {**FORMER, **m["config"]}
    end = datetime.fromisoformat(m["finished_at"]).timestamp()
    return {
        "schema": 2,
        **m,
        "config": config,
        "parameters": parameter_count(m["model"], config["stem"]),
        "test_tta": config["tta"],
        "device": "cuda",  # these records named the GPU here; its index went unrecorded
        "device_name": m["device"],
        "machine": None,  # unknown: never counted as sharing a device
        "inputs": m.get("inputs", {"data": None, "weights": None}),
        "started_at": stamp(end - m["wall_time_s"]),
        "finished_at": stamp(end),
    }


for path in sorted(Path(__file__).parent.glob("*/*/metrics.json")):
    path.write_text(json.dumps(convert(json.loads(path.read_text())), indent=2) + "\n")
