"""The demo end to end at a toy budget: both runs, every picture and the report are written."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from qac.demo import DemoConfig, run_demo
from qac.errors import QACError


@pytest.mark.slow
def test_demo_writes_report_folder(tmp_path):
    cfg = DemoConfig(steps=3, nfe=(3, 5), num_eval=24, device="cpu", progress=False)
    res = run_demo(tmp_path / "demo", cfg)
    out = tmp_path / "demo"
    for name in ("report.md", "samples.png", "codes.png", "losses.png", "code_usage.png", "results.json"):
        assert (out / name).exists(), name
    assert (out / "baseline" / "checkpoint").is_dir() and (out / "qac" / "checkpoint").is_dir()
    saved = json.loads((out / "results.json").read_text())
    assert [r["nfe"] for r in saved["rows"]] == [3, 5]
    assert all(r["baseline"] > 0 and r["qac"] > 0 for r in saved["rows"])
    assert saved["params"]["baseline"]["encoder"] == 0 and saved["params"]["qac"]["encoder"] > 0
    assert res["data_floor"] > 0
    report = (out / "report.md").read_text()
    assert "proxy_pixel_fd" in report and "| 3 |" in report and "not FID" in report
    w, h = Image.open(out / "samples.png").size
    # two columns (baseline, QAC) of 8-wide grids, two NFE rows of 3-high grids (24 samples), digits at x4
    assert w > 2 * 8 * 8 * 4 and h > 2 * 3 * 8 * 4
    with pytest.raises(QACError, match="already holds a demo"):
        run_demo(out, cfg)
