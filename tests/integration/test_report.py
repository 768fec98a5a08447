"""The HTML report as a user makes it: ``--html`` on compare, eval and bench, ``report`` over their JSON, checked in
headless Chromium with the network off; its size over 90 pictures; rendering without torch or matplotlib.

The results are real: gflv2_tiny with 80 classes and a head that detects (random weights), exported to a fixed
320 x 320 ONNX, compared torch vs onnxruntime and evaluated on the 50 COCO photos of tests/data, and a small
benchmark. The browser is Debian's chromium (scripts/setup_browser.sh), driven by scripts/browser_check.py;
without it the browser tests are skipped, unless GFLV2_REQUIRE_CHROMIUM=1 (scripts/test.sh) makes that a
failure. Screenshots go to build/artifacts/report/ (CI keeps build/artifacts).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gflv2_deploy.report.build import PAGE_BASE_BYTES, page_size_budget
from gflv2_deploy.report.pictures import MAX_PICTURE_BYTES

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "build" / "artifacts" / "report"


def run_cli(*args: object, threads: bool = True) -> subprocess.CompletedProcess:
    extra = ["--threads", "1"] if threads else []
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args), *extra], capture_output=True, text=True,
                          timeout=900, cwd=REPO)


def _browser_check():
    spec = importlib.util.spec_from_file_location("browser_check", REPO / "scripts" / "browser_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, detecting_model, tiny50: Path) -> dict[str, Path]:
    """compare / eval / bench JSON and their --html pages, then one report of all three with 50 + 50 pictures."""
    from gflv2_deploy.export.onnx import export_onnx
    from gflv2_deploy.model.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("report")
    model = detecting_model("gflv2_tiny", 0, num_classes=80)
    ckpt, onnx_path = root / "tiny80.pth", root / "tiny80.onnx"
    save_checkpoint(ckpt, model, model.config)
    export_onnx(ckpt, onnx_path, nms="none", dynamic_hw=False, input_hw=(320, 320))
    f = {k: root / name for k, name in (("compare", "compare.json"), ("eval", "eval.json"), ("bench", "bench.json"),
                                        ("compare_html", "compare.html"), ("eval_html", "eval.html"),
                                        ("bench_html", "bench.html"), ("all", "all.html"))}
    proc = run_cli("compare", "--ref", f"torch:{ckpt}", "--test", f"onnxruntime:{onnx_path}", "--data", tiny50,
                   "--report", f["compare"], "--html", f["compare_html"], "--batch-size", "2")
    assert proc.returncode in (0, 1) and f["compare"].is_file(), proc.stderr  # 1: a budget failed; the pages exist anyway
    proc = run_cli("eval", "--backend", "onnxruntime", "--model", onnx_path, "--data", tiny50, "--batch-size", "2",
                   "--out", f["eval"], "--html", f["eval_html"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("bench", "--backend", "torch,onnxruntime", "--config", "gflv2_tiny", "--shape", "64x96", "--batch", "1",
                   "--batch", "2", "--iterations", "4", "--warmup", "1", "--cache-dir", root / "cache", "--out", f["bench"],
                   "--html", f["bench_html"])
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", f["compare"], f["eval"], f["bench"], "--out", f["all"], "--worst", "50", "--missed", "50",
                   threads=False)
    assert proc.returncode == 0, proc.stderr
    f["all_stdout"] = root / "all.log"
    f["all_stdout"].write_text(proc.stdout)
    return f


def _img_sources(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_each_command_writes_its_page_and_the_json_keeps_what_the_report_draws(made: dict[str, Path]) -> None:
    for key in ("compare_html", "eval_html", "bench_html"):
        html = made[key].read_text()
        assert html.startswith("<!DOCTYPE html>") and _img_sources(html), key
    c = json.loads(made["compare"].read_text())
    d = c["detections"]
    assert d["worst_details"] and len(d["worst_details"]) <= 50 and Path(d["worst_details"][0]["path"]).is_absolute()
    assert sum(d["score_delta_hist"]["counts"]) == d["matched"] and c["test"]["precision"] == "fp32"
    e = json.loads(made["eval"].read_text())
    gt = json.loads(Path(e["data"]["ann_file"]).read_text())
    with_objects = {a["image_id"] for a in gt["annotations"] if not a.get("iscrowd", 0)}
    # the random-weight model finds almost nothing at score 0.3: every photo with an object has a miss
    assert len(e["per_class"]) == 80 and len(e["confusion"]["matrix"]) == 81
    assert len(e["missed_images"]) == len(with_objects) > 40
    assert [cv["iou"] for cv in e["pr_curves"]["curves"]] == [0.5, 0.75]
    b = json.loads(made["bench"].read_text())
    assert all(len(r["infer"]["samples_ms"]) == 4 for r in b["results"])


def test_a_report_over_90_pictures_stays_under_its_size_budget(made: dict[str, Path]) -> None:
    """Why the bound: pictures are at most 560 px on the long side, JPEG quality 80, so at most MAX_PICTURE_BYTES of
    base64 each; plots, tables, style and script add less than PAGE_BASE_BYTES. 100 pictures: under 13.5 MB."""
    html = made["all"].read_text()
    jpegs = [s for s in _img_sources(html) if s.startswith("data:image/jpeg")]
    missed = len(json.loads(made["eval"].read_text())["missed_images"])
    assert len(jpegs) == 50 + missed > 90  # the 50 worst compared photos + every evaluated photo with a miss
    assert max(len(s) for s in jpegs) <= MAX_PICTURE_BYTES
    size = made["all"].stat().st_size
    assert size <= page_size_budget(len(jpegs)) == PAGE_BASE_BYTES + len(jpegs) * MAX_PICTURE_BYTES
    assert size - sum(len(s) for s in jpegs) <= PAGE_BASE_BYTES
    assert f"{len(jpegs)} pictures" in made["all_stdout"].read_text()
    print(f"\nreport with {len(jpegs)} pictures: {size / 1e6:.2f} MB (budget {page_size_budget(len(jpegs)) / 1e6:.1f} MB)")


def test_several_results_get_a_summary_linking_to_their_sections(made: dict[str, Path]) -> None:
    html = made["all"].read_text()
    assert html.count('<section class="result"') == 3 and '<section id="summary">' in html
    for anchor in ("compare-1", "eval-2", "bench-3"):
        assert f'id="{anchor}"' in html and f'href="#{anchor}"' in html


# --- without torch, without matplotlib ------------------------------------------------------------------------
_BLOCKED = """
import importlib.abc, sys
BLOCK = sys.argv[1].split(",")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError(name + " is not installed (blocked by the test)")
sys.meta_path.insert(0, Block())
sys.argv = ["gflv2-deploy"] + sys.argv[2:]
from gflv2_deploy.cli import main
try:
    main()
finally:
    assert not any(m.split(".")[0] in BLOCK for m in sys.modules), "a blocked module was imported"
"""


def run_blocked(blocked: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKED, blocked, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)


def test_report_renders_without_torch(made: dict[str, Path], tmp_path: Path) -> None:
    proc = run_blocked("torch", "report", made["compare"], made["eval"], made["bench"], "--out", tmp_path / "r.html")
    assert proc.returncode == 0, proc.stderr
    assert len(_img_sources((tmp_path / "r.html").read_text())) > 20


def test_without_matplotlib_one_line_names_the_extra_and_nothing_is_written(made: dict[str, Path], tmp_path: Path) -> None:
    proc = run_blocked("matplotlib", "report", made["eval"], "--out", tmp_path / "r.html")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "pip install 'gflv2-deploy[report]'" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


# --- in a real browser ----------------------------------------------------------------------------------------
browser_check = _browser_check()
CHROMIUM = browser_check.find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None and os.environ.get("GFLV2_REQUIRE_CHROMIUM") != "1",
                                    reason="chromium not installed: bash scripts/setup_browser.sh")


def _not_blank(png: Path) -> float:
    image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    assert image is not None and image.size > 0, png
    return float(image.std())


@needs_chromium
def test_the_report_opens_offline_with_every_picture_and_plot(made: dict[str, Path]) -> None:
    html = made["all"].read_text()
    shots = {f"#{a}": ARTIFACTS / f"section_{a}.png" for a in ("summary", "compare-1", "eval-2", "bench-3")}
    result = browser_check.check_page(made["all"], screenshot=ARTIFACTS / "page.png", shots=shots,
                                      clicks=["#eval-2 table.sortable th:nth-child(1)"])
    assert result["console"] == [] and result["requests"] == []
    assert len(result["images"]) == len(_img_sources(html)) > 100
    broken = [i for i in result["images"] if not i["decoded"] or i["naturalWidth"] == 0 or i["naturalHeight"] == 0]
    assert broken == []
    assert len(result["screenshots"]) == 5
    for png in map(Path, result["screenshots"]):
        assert _not_blank(png) > 10, png  # a blank page has no variance
    # the click sorted the per-class table by name
    names = [r["class"] for r in json.loads(made["eval"].read_text())["per_class"]]
    assert result["clicked"]["#eval-2 table.sortable th:nth-child(1)"] == min(names, key=str.lower)


@needs_chromium
def test_the_browser_check_sees_what_breaks_a_page(tmp_path: Path) -> None:
    """The checks can fail: a network request, a console error, a picture that does not decode, a blank page."""
    page = tmp_path / "broken.html"
    bad_png = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really").decode()
    page.write_text("<!DOCTYPE html><html><body style='background:#fff'>"
                    "<img src='http://example.invalid/x.png' alt='remote'>"
                    f"<img src='data:image/png;base64,{bad_png}' alt='corrupt'>"
                    "<script>console.error('boom')</script></body></html>")
    result = browser_check.check_page(page, screenshot=tmp_path / "blank.png")
    assert any("example.invalid" in url for url in result["requests"])
    assert any("boom" in line for line in result["console"])
    assert [i["naturalWidth"] for i in result["images"]] == [0, 0]
    assert _not_blank(tmp_path / "blank.png") < 10


def test_pictures_are_jpeg_and_plots_svg(made: dict[str, Path]) -> None:
    kinds = {s.split(";")[0] for s in _img_sources(made["all"].read_text())}
    assert kinds == {"data:image/jpeg", "data:image/svg+xml"}
    first = next(s for s in _img_sources(made["all"].read_text()) if s.startswith("data:image/jpeg"))
    picture = cv2.imdecode(np.frombuffer(base64.b64decode(first.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert max(picture.shape[:2]) <= 560
