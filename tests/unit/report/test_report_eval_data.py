"""The data behind the eval section: the per-class table, the confusion view, PR series, missed pictures."""

from __future__ import annotations

import numpy as np
import pytest

from gflv2_deploy.report.eval_data import class_table, confusion_view, pr_series, select_missed, size_rows, stat


def _row(name, ap, gt=3) -> dict:
    return {"class": name, "AP": ap, "AP50": ap, "AP75": ap, "APs": -1.0, "APm": ap, "APl": ap, "gt": gt, "detections": 4}


def test_class_table_worst_first_and_undefined_last() -> None:
    rows = class_table([_row("zebra", 0.7), _row("cat", 0.2), _row("yak", -1.0, gt=0), _row("ant", 0.2), _row("dog", 0.0),
                        _row("bee", -1.0, gt=0)])
    assert [r["class"] for r in rows] == ["dog", "ant", "cat", "zebra", "bee", "yak"]
    assert rows[0]["AP"] == 0.0 and rows[0]["APs"] is None  # -1 is undefined, shown as such, never as 0
    assert rows[-1]["AP"] is None and rows[-1]["gt"] == 0


MATRIX = [[5, 2, 0, 0, 1],  # predicted a   (columns: true a, b, c, d, background)
          [1, 4, 0, 0, 0],  # predicted b
          [0, 0, 9, 1, 0],  # predicted c
          [0, 0, 0, 3, 0],  # predicted d
          [2, 1, 0, 1, 0]]  # background: missed


def test_confusion_view_keeps_the_most_confused_classes_and_sums_the_rest() -> None:
    # confusions (off-diagonal, background included) per class: a 1+2+2+1 = 6, b 2+1+1 = 4, c 1, d 1+1 = 2
    view = confusion_view({"classes": ["a", "b", "c", "d"], "matrix": MATRIX}, max_classes=2)
    assert view.labels == ["a", "b", "other 2 classes", "background"]
    assert view.counts.tolist() == [[5, 2, 0, 1],
                                    [1, 4, 0, 0],
                                    [0, 0, 13, 0],
                                    [2, 1, 1, 0]]
    # each column divided by its true class's objects over ALL predicted rows: a 8, b 7, c + d 14, background 1
    np.testing.assert_allclose(view.fractions[:, 0], [5 / 8, 1 / 8, 0, 2 / 8])
    np.testing.assert_allclose(view.fractions[:, 2], [0, 0, 13 / 14, 1 / 14])
    np.testing.assert_allclose(view.fractions[:, 3], [1, 0, 0, 0])


def test_confusion_view_with_room_for_every_class() -> None:
    view = confusion_view({"classes": ["a", "b", "c", "d"], "matrix": MATRIX}, max_classes=20)
    assert view.labels == ["a", "b", "c", "d", "background"] and view.counts.tolist() == MATRIX
    np.testing.assert_allclose(view.fractions.sum(axis=0), [1, 1, 1, 1, 1])


def test_missed_pictures_most_not_found_first() -> None:
    recs = [{"image": i, "not_found": n, "missed": m} for i, n, m in ((1, 2, 0), (2, 3, 1), (3, 2, 2), (4, 1, 1))]
    assert [r["image"] for r in select_missed(recs, 3)] == [2, 3, 1]


def test_stats_sizes_and_pr_series() -> None:
    names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    m = {"stats": [0.4, 0.6, 0.5, -1.0, 0.3, 0.5, 0.2, 0.4, 0.5, -1.0, 0.4, 0.6], "stat_names": names,
         "per_class": [{"class": "a", "AP": 0.9}, {"class": "b", "AP": 0.1}, {"class": "c", "AP": -1.0}],
         "pr_curves": {"recall": [0.0, 0.5, 1.0], "curves": [{"iou": 0.5, "mean": [1.0, 0.75, 0.5],
                                                               "per_class": [[1, 1, 1], [1, 0.5, 0], [-1, -1, -1]]}]}}
    assert stat(m, "APs") is None and stat(m, "AP") == pytest.approx(0.4)
    assert size_rows(m) == [("small", None, None), ("medium", 0.3, 0.4), ("large", 0.5, 0.6)]
    (series,) = pr_series(m, highlight=5)
    assert series.iou == 0.5 and series.highlight == [1, 0]  # worst AP first; c has no AP
    assert series.per_class.shape == (3, 3) and series.classes == ["a", "b", "c"]
    assert pr_series({"stats": []}) == []
