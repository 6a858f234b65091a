"""Published reports hold no local path: the writer names datasets and keeps file names only, and
the committed reports under benchmarks/results obey that."""

from __future__ import annotations

import json
import re
from pathlib import Path

from roadseg.benchmarks import report
from roadseg.benchmarks.portable import portable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LOCAL = re.compile(r"(/root/|/home/|/tmp/|/work/|\.\./|\.cache/|shared/datasets)")


def test_portable_names_the_dataset_and_keeps_file_names(tmp_path):
    data = tmp_path / "somewhere" / "camvid"
    (data / "valannot").mkdir(parents=True)
    (data / "val.txt").write_text("")
    doc = {
        "config": {"data": str(data), "calib": str(data), "report": str(tmp_path / "r"), "source": "/videos/drive.mp4",
                   "e2e_source": "rtsp://10.0.0.3/rear"},
        "frames": {"source": f"101 labelled val frames of {data}", "count": 101},
        "rows": [{"artifact": f"{Path.home()}/.cache/roadseg/bench/ab12/int8_u8.onnx",
                  "log": "wrote /root/.cache/x/fp32.onnx (22 MB)\nratio 1/2 of docs/MODEL.md", "n": 3}],
    }  # fmt: skip
    out = portable(doc)
    assert out["config"] == {"data": "CamVid", "calib": "CamVid", "source": "drive.mp4", "e2e_source": "rtsp://10.0.0.3/rear"}
    assert out["frames"] == {"source": "101 labelled val frames of CamVid", "count": 101}
    assert out["rows"] == [{"artifact": "int8_u8.onnx", "log": "wrote fp32.onnx (22 MB)\nratio 1/2 of docs/MODEL.md", "n": 3}]
    assert doc["config"]["report"] == str(tmp_path / "r")  # the caller's document is not changed


def test_the_writer_writes_no_local_path(tmp_path):
    doc = json.loads((RESULTS / "cpu-2core-variants" / "results.json").read_text())
    doc["config"]["report"] = str(tmp_path / "report")
    doc["rows"][0]["artifact"] = str(tmp_path / "cache" / "model.onnx")
    doc["frames"]["source"] = f"60 frames of {tmp_path}/clip.mp4"
    report.write(tmp_path / "report", doc)
    for name in ("results.json", "results.csv", "results.md"):
        text = (tmp_path / "report" / name).read_text()
        assert str(tmp_path) not in text and not LOCAL.search(text), name


def test_committed_reports_hold_no_local_path():
    files = [p for p in RESULTS.rglob("*") if p.suffix in (".json", ".csv", ".md")]
    assert len(files) >= 7
    for p in files:
        hit = LOCAL.search(p.read_text())
        assert hit is None, f"{p.relative_to(ROOT)} holds {hit.group(0)!r}"
