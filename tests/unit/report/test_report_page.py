"""The page: user text escaped everywhere, nothing outside the file referenced, plots valid and reproducible."""

from __future__ import annotations

import base64
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from gflv2_deploy import spec
from gflv2_deploy.eval.compare import DetectionAgreement, build_report, default_budgets
from gflv2_deploy.eval.confusion import ConfusionAccumulator
from gflv2_deploy.report.build import render_report, write_report
from gflv2_deploy.report.html import CSP, Cell, esc, table
from gflv2_deploy.report.results import result_from_data

EVIL = '<img src=x onerror="alert(1)">&amp;'


def dets(boxes, scores, labels) -> spec.Detections:
    return spec.Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                           np.asarray(labels, np.int64))


@pytest.fixture()
def picture(tiny50: Path, tmp_path: Path) -> Path:
    folder = tmp_path / 'odd "folder" & <name>'
    folder.mkdir()
    return Path(shutil.copy(sorted((tiny50 / "val2017").glob("*.jpg"))[0], folder / "photo.jpg"))


def _compare(picture: Path) -> dict:
    agree = DetectionAgreement(0.9, 1e-2, class_names=(EVIL, "dog"))
    ref = dets([[10, 10, 200, 200], [250, 50, 400, 300]], [0.9, 0.8], [0, 1])
    test = dets([[10, 10, 200, 201]], [0.85], [0])
    agree.update(7, ref, test, path=str(picture))
    return build_report(ref={"label": EVIL, "backend": "torch", "test_cfg": {}, "outputs": []},
                        test={"label": "onnxruntime:m.onnx", "backend": "onnxruntime", "model": EVIL, "test_cfg": {}, "outputs": []},
                        budgets=default_budgets("int8"), tensors=None, tensors_note=EVIL, detections=agree, ap=None,
                        settings={"images": 1, "batch_size": 1, "data": EVIL}, notes=[EVIL])


def _eval(picture: Path) -> dict:
    acc = ConfusionAccumulator([EVIL, "dog"])
    acc.update(7, [[10, 10, 200, 200]], [0], np.zeros((0, 4)), [], [], path=str(picture))
    return {"stats": [0.5] * 12, "stat_names": ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"],
            "num_images": 1, "num_detections": 0, "class_names": [EVIL, "dog"],
            "per_class": [{"class": EVIL, "AP": 0.25, "AP50": 0.5, "AP75": 0.2, "APs": -1, "APm": 0.2, "APl": 0.3, "gt": 1, "detections": 0}],
            **acc.result()}


def _outside_data_uris(html: str) -> str:
    return re.sub(r'data:[a-z/+]+;base64,[A-Za-z0-9+/=]+', "DATA", html)


def test_user_text_is_escaped_everywhere(picture: Path) -> None:
    results = [result_from_data(_compare(picture), EVIL, 0), result_from_data(_eval(picture), "eval.json", 1)]
    html, pictures = render_report(results)
    text = _outside_data_uris(html)
    assert EVIL not in text and esc(EVIL) in text
    assert text.count("<script>") == 1 and "onerror=" not in text.replace(esc('onerror="'), "")
    assert len(pictures) == 2 and all(p.uri is not None for p in pictures)  # the quoted folder name is no obstacle


def test_the_page_references_nothing_outside_itself(picture: Path) -> None:
    html, _ = render_report([result_from_data(_compare(picture), "c.json")])
    text = _outside_data_uris(html)
    assert f'content="{CSP}"' in text and "default-src 'none'" in CSP
    assert not re.search(r"https?:|//[a-z]", text.replace("'none'", "")), "a URL outside the page"
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/") for s in srcs)


def test_every_plot_is_svg_and_the_same_data_gives_the_same_bytes(picture: Path) -> None:
    results = [result_from_data(_compare(picture), "c.json"), result_from_data(_eval(picture), "e.json", 1)]
    first, _ = render_report(results)
    second, _ = render_report(results)
    svgs = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', first)
    assert len(svgs) >= 3  # Δ histograms, object size, confusion matrix
    for data in svgs:
        root = ET.fromstring(base64.b64decode(data))
        assert root.tag.endswith("svg") and float(root.get("width").rstrip("pt")) > 100
    stamp = re.compile(r"on \d{4}-\d\d-\d\d \d\d:\d\d UTC")
    assert stamp.sub("", first) == stamp.sub("", second)


def test_missing_pictures_become_notes_and_are_counted(picture: Path, tmp_path: Path) -> None:
    data = _compare(picture)
    data["detections"]["worst_details"][0]["path"] = str(tmp_path / "gone.jpg")
    written = write_report([result_from_data(data, "c.json")], tmp_path / "r.html")
    assert written.pictures == 0 and len(written.missing) == 1 and "gone.jpg" in written.missing[0]
    assert 'class="missing"' in (tmp_path / "r.html").read_text()


def test_sortable_table_cells_carry_their_sort_values() -> None:
    html = table(("class", "AP"), [(EVIL, Cell("0.1", 0.1, "num")), ("b", Cell("–", float("-inf"), "num"))], sortable=True)
    assert 'class="sortable"' in html and 'data-sort="0.1"' in html and 'data-sort="-inf"' in html
    assert esc(EVIL) in html and EVIL not in html


def test_a_busy_picture_is_squeezed_under_the_per_picture_limit() -> None:
    from gflv2_deploy.report.pictures import MAX_PICTURE_BYTES, encode_jpeg

    noise = np.random.default_rng(0).integers(0, 256, (560, 560, 3), np.uint8)  # the worst case for JPEG
    first = encode_jpeg(noise, quality=95, max_bytes=10 ** 9)
    assert len(first) > MAX_PICTURE_BYTES
    squeezed = encode_jpeg(noise)
    assert len(squeezed) <= MAX_PICTURE_BYTES and squeezed.startswith("data:image/jpeg;base64,")
    import cv2

    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(squeezed.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape[0] == decoded.shape[1] >= 100  # smaller, still a picture


def test_results_written_before_the_report_fields_still_render(picture: Path) -> None:
    compare = _compare(picture)
    for key in ("score_delta_hist", "box_delta_hist", "box_delta_max", "box_delta_mean", "worst_details", "class_names"):
        compare["detections"].pop(key)
    compare.pop("passed")
    evaluation = {k: v for k, v in _eval(picture).items() if k in ("stats", "stat_names", "num_images", "num_detections")}
    stats = {"p50_ms": 10.0, "p90_ms": 11.0, "p99_ms": 12.0, "mean_ms": 10.5, "throughput_img_s": 100.0}
    bench = {"machine": {"processor": "cpu"}, "settings": {}, "comparison": [],
             "results": [{"backend": "torch", "model": "m", "shape": "64x64", "batch": 1, "infer": stats, "e2e": None}]}
    html, pictures = render_report([result_from_data(compare, "c.json"), result_from_data(evaluation, "e.json", 1),
                                    result_from_data(bench, "b.json", 2)])
    assert pictures == []
    for note in ("written before compare kept them", "written without details", "this file has no raw samples"):
        assert note in html
