"""What the commands lean on: the output-location check (atomic.check_writable), progress lines in logs, safe
printing of user text, and the compare gate's minimum of reference detections."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from gflv2_deploy.atomic import check_writable
from gflv2_deploy.cli.options import cell, parse_hw
from gflv2_deploy.errors import UserError
from gflv2_deploy.eval.compare import AP_BUDGETS, BUDGETS, check_budgets, default_budgets
from gflv2_deploy.progress import progress_lines


def test_check_writable_accepts_new_and_existing_places(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "new" / "deeper" / "m.onnx") == tmp_path / "new" / "deeper" / "m.onnx"
    (tmp_path / "old.json").write_text("{}")
    check_writable(tmp_path / "old.json")
    check_writable(tmp_path, folder=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # the probe is gone, no folder was made


@pytest.mark.parametrize("relative, folder, message", [
    ("a_file/x.onnx", False, "a_file is a file, not a folder"),
    ("a_file", True, "exists and is a file"),
    ("a_dir", False, "is a folder: give a file name"),
])
def test_check_writable_refusals(tmp_path: Path, relative: str, folder: bool, message: str) -> None:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_dir").mkdir()
    with pytest.raises(UserError, match=message):
        check_writable(tmp_path / relative, folder=folder)


def test_check_writable_probes_instead_of_trusting_permission_bits() -> None:
    if not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux /proc")
    with pytest.raises(UserError, match="no file can be created in /proc"):
        check_writable("/proc/gflv2/out.json")


def test_progress_lines_in_logs() -> None:
    stream = io.StringIO()
    assert list(progress_lines(range(3), 3, "detect", stream, every_s=0.0)) == [0, 1, 2]
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("detect: 1/3 (33%), ") and lines[-1].startswith("detect: 3/3 (100%), ")
    quiet = io.StringIO()
    list(progress_lines(range(5), 5, "compare", quiet, every_s=3600.0))
    assert len(quiet.getvalue().splitlines()) == 1 and "5/5 (100%)" in quiet.getvalue()  # only the closing line
    empty = io.StringIO()
    assert list(progress_lines([], 0, "x", empty)) == [] and empty.getvalue() == ""


def test_cells_and_shapes() -> None:
    assert cell("x[/bad]").plain == "x[/bad]"
    assert parse_hw("8192x32") == (8192, 32)
    for bad in ("8224x32", "33x64", "0x32", "axb"):
        with pytest.raises(UserError):
            parse_hw(bad)


def test_one_ap_budget_table() -> None:
    assert AP_BUDGETS == {name: row.max_ap_drop for name, row in BUDGETS.items()}
    from gflv2_deploy.export.sensitivity import DEFAULT_AP_BUDGET

    assert DEFAULT_AP_BUDGET == AP_BUDGETS["int8"]


def _report(num_ref: int, min_ref_dets: int) -> dict:
    budgets = default_budgets("fp32", min_ref_dets=min_ref_dets).to_dict()
    detections = {"num_ref": num_ref, "num_test": num_ref, "matched": num_ref, "matched_fraction": 1.0, "unmatched_ref": 0,
                  "unmatched_test": 0, "score_delta_max": 0.0, "iou_thr": 0.99}
    return {"budgets": budgets, "tensors": {}, "detections": detections, "ap": None}


def test_a_gate_that_compared_nothing_fails() -> None:
    assert check_budgets(_report(0, 1)) and "the reference made 0 detection(s)" in check_budgets(_report(0, 1))[0]
    assert check_budgets(_report(3, 1)) == []
    assert check_budgets(_report(3, 5)) and check_budgets(_report(0, 0)) == []


def test_json_files_keep_lists_of_values_on_one_line_and_strings_intact(tmp_path: Path) -> None:
    import json

    from gflv2_deploy.atomic import write_json_atomic

    data = {"boxes": [[1.5, 2, 3, 4e-07], [5, 6, 7, 8]], "flags": [True, False, None], "names": ["a", "b"],
            "note": "[\n1,2]", "empty": [], "nan": [float("nan")]}
    path = tmp_path / "r.json"
    write_json_atomic(path, data)
    text = path.read_text()
    assert '[1.5, 2, 3, 4e-07]' in text and '"flags": [true, false, null]' in text and '"nan": [NaN]' in text
    assert '"names": [\n' in text  # lists of strings are left as json wrote them
    back = json.loads(text)
    assert back["note"] == "[\n1,2]" and back["boxes"] == data["boxes"] and back["names"] == ["a", "b"]
