"""The soak benchmark script (benchmarks/soak.py) on a tiny model for 2,000 frames: the JSON it
writes has the documented schema, the plot is a PNG, and its checks can fail. The 100,000-frame
soak itself is not a CI test (docs/RELIABILITY.md gives the command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from roadseg.benchmarks import soak

pytestmark = pytest.mark.timeout(240)


def _samples(rss, fds=None, threads=None, every=1000):
    n = len(rss)
    fds = fds or [10] * n
    threads = threads or [8] * n
    return [{"frame": i * every, "t_s": float(i), "rss_mb": r, "fds": f, "threads": t}
            for i, (r, f, t) in enumerate(zip(rss, fds, threads))]  # fmt: skip


def test_checks_pass_on_flat_runs_and_fail_on_leaks_and_slowdowns():
    flat = _samples([80.0, 120.0, 121.0, 120.5, 121.5])  # warm-up growth before frame 1000 is allowed
    assert soak.rss_check(flat, 1000)["passed"] is True
    leak = _samples([100.0, 100.0, 102.0, 104.0, 106.0])
    r = soak.rss_check(leak, 1000)
    assert r["passed"] is False and r["growth_pct"] == pytest.approx(6.0) and r["slope_mb_per_10k_frames"] > 0
    fds = soak.count_check(_samples([1.0] * 5, fds=[10, 10, 10, 11, 12]), "fds", 1000, 6, 12)
    assert fds["passed"] is False and fds["gained"] == 2
    assert soak.count_check(_samples([1.0] * 5, threads=[9, 9, 8, 9, 9]), "threads", 1000, 1, 3)["passed"] is True
    steady = soak.fps_windows([100] * 180 + [50], 180.5, 60)
    assert [w["full"] for w in steady] == [True, True, True, False]
    assert soak.fps_check(steady)["passed"] is True
    slower = soak.fps_windows([100] * 60 + [85] * 60 + [100] * 60, 180, 60)
    f = soak.fps_check(slower)
    assert f["passed"] is False and f["worst_pct"] == pytest.approx(-15.0)
    assert soak.fps_check(soak.fps_windows([100] * 30, 30, 60))["passed"] is None  # too short to judge
    # 100 FPS falling by 1 FPS each minute for 10 minutes: -60 FPS per hour on a mean of 95.5
    falling = soak.fps_windows([100 - m for m in range(10) for _ in range(60)], 600, 60)
    assert soak.fps_check(falling)["trend_pct_per_hour"] == pytest.approx(-100 * 60 / 95.5, abs=0.01)
    assert soak.fps_check(steady)["trend_pct_per_hour"] == 0 and soak.fps_check(steady)["cv_pct"] == 0
    checks = {"rss": {"passed": True}, "fps": {"passed": None}}
    assert soak.verdict(checks, False, None) == "pass"
    assert soak.verdict(checks, True, None) == "incomplete"
    assert soak.verdict({**checks, "fds": {"passed": False}}, False, None) == "fail"
    assert soak.verdict(checks, False, "source lost") == "fail"


@pytest.mark.slow
def test_soak_script_on_a_tiny_model(tiny_onnx, tmp_path):
    out = tmp_path / "results"
    cmd = [sys.executable, "-m", "roadseg.benchmarks.soak", "--model", str(tiny_onnx), "--backend", "ort-cpu",
           "--frames", "2000", "--every", "500", "--size", "72", "96", "--threads", "1", "--window", "2", "--out",
           str(out), "--machine", "ci test/1", "--quiet"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=200, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode in (0, 1), r.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["soak-ci-test-1.json", "soak-ci-test-1.png"]  # no temporaries
    assert (out / "soak-ci-test-1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = json.loads((out / "soak-ci-test-1.json").read_text())

    assert res["schema"] == "roadseg-soak/1" and res["backend"] == "ort-cpu" and res["model"] == tiny_onnx.name  # no local path
    assert res["verdict"] in ("pass", "fail") and r.returncode == (0 if res["verdict"] == "pass" else 1)
    assert f"verdict: {res['verdict'].upper()}" in r.stdout
    assert {"name", "platform", "python", "cpu_count"} <= set(res["machine"]) and res["machine"]["name"] == "ci-test-1"
    assert res["config"] == {"model": tiny_onnx.name, "backend": "ort-cpu", "frames": 2000, "every": 500, "warmup_frames": 500,
                             "window_s": 2.0, "size": [72, 96], "threads": 1, "overlay": True, "save": None}  # fmt: skip
    s = res["summary"]
    assert s["frames_out"] == 2000 and s["dropped"] == 0 and s["error"] is None and not s["interrupted"]
    assert s["fps"] > 0 and s["stages"]["infer"]["count"] == 2000 and s["stages"]["overlay"]["count"] == 2000
    assert [x["frame"] for x in res["samples"]] == [0, 500, 1000, 1500, 2000]
    for x in res["samples"]:
        assert x["rss_mb"] > 10 and x["fds"] > 0 and x["threads"] > 0 and x["t_s"] >= 0
    assert [x["t_s"] for x in res["samples"]] == sorted(x["t_s"] for x in res["samples"])
    assert set(res["process"]) == {"before_open", "after_open", "after_close"}
    assert sum(w["frames"] for w in res["fps_windows"]) == 2000
    c = res["checks"]
    assert set(c) == {"rss", "fds", "threads", "fps"}
    for key in ("baseline_mb", "final_mb", "peak_mb", "growth_pct", "slope_mb_per_10k_frames"):
        assert isinstance(c["rss"][key], float), key
    assert c["rss"]["limit_pct"] == 5.0 and c["fps"]["limit_pct"] == 10.0
    for key in ("fds", "threads"):
        assert {"baseline", "final", "max", "gained", "before_open", "after_close", "passed"} <= set(c[key])
    assert all(isinstance(v["passed"], bool) for v in (c["rss"], c["fds"], c["threads"]))
    assert c["fps"]["passed"] is None or isinstance(c["fps"]["passed"], bool)
