"""Listing an infer SOURCE: folders, list files, globs, and the same through URIs (``file://``, read by pyarrow)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from gflv2_deploy.batch.source import glob_regex, is_uri, list_pictures, read_picture
from gflv2_deploy.data.image_io import read_image
from gflv2_deploy.errors import UserError


def make_tree(root: Path) -> list[str]:
    """A picture tree with nested folders, hidden entries, upper-case suffixes, a space and a '#' in names."""
    files = ["a.jpg", "b.PNG", "notes.txt", ".hidden.jpg", "sub/c.jpeg", "sub/deep/d x#1.jpg", "sub/deep/e.bmp",
             ".cache/f.jpg", "sub/.g/h.jpg", "ab/x1.png", "ab/x22.png", "b2/z.JPG"]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    return files


def as_local(locations: list[str]) -> list[str]:
    """file:///x -> /x (percent escapes decoded)."""
    return [unquote(loc[len("file://"):]) if is_uri(loc) else loc for loc in locations]


def test_folder_is_searched_recursively_sorted_without_hidden_or_other_files(tmp_path: Path) -> None:
    make_tree(tmp_path)
    found = list_pictures(str(tmp_path))
    rel = [os.path.relpath(p, tmp_path) for p in found]
    assert rel == ["a.jpg", "ab/x1.png", "ab/x22.png", "b.PNG", "b2/z.JPG", "sub/c.jpeg", "sub/deep/d x#1.jpg",
                   "sub/deep/e.bmp"]
    assert all(os.path.isabs(p) for p in found)


def test_folder_through_a_file_uri_lists_the_same_pictures(tmp_path: Path) -> None:
    make_tree(tmp_path)
    uris = list_pictures(f"file://{tmp_path}/")
    assert all(u.startswith("file:///") for u in uris)
    assert "d%20x%231.jpg" in uris[6]  # a URI, percent-escaped
    assert as_local(uris) == list_pictures(str(tmp_path))


@pytest.mark.parametrize("pattern", ["*.jpg", "**/*.jpg", "**/*.png", "a*/x?.png", "ab/x[0-9].png", "[!a]*/*",
                                     "sub/**", "**/deep/*", "*/*.[Jj][Pp][Gg]"])
def test_glob_matches_like_python_glob_locally_and_through_a_uri(pattern: str, tmp_path: Path) -> None:
    make_tree(tmp_path)
    import glob as pyglob

    expected = sorted(p for p in pyglob.glob(f"{tmp_path}/{pattern}", recursive=True) if os.path.isfile(p))
    assert expected, pattern
    assert list_pictures(f"{tmp_path}/{pattern}") == expected
    assert as_local(list_pictures(f"file://{tmp_path}/{pattern}")) == expected  # pyarrow listing + glob_regex


def test_glob_regex_keeps_wildcards_within_a_segment() -> None:
    assert glob_regex("*.jpg").fullmatch("a.jpg") and not glob_regex("*.jpg").fullmatch("d/a.jpg")
    assert glob_regex("**/*.jpg").fullmatch("a.jpg") and glob_regex("**/*.jpg").fullmatch("d/e/a.jpg")
    assert not glob_regex("*.jpg").fullmatch(".a.jpg") and not glob_regex("**/a.jpg").fullmatch(".d/a.jpg")
    assert glob_regex("[!b]?.png").fullmatch("ax.png") and not glob_regex("[!b]?.png").fullmatch("bx.png")
    assert glob_regex("a[.jpg").fullmatch("a[.jpg")  # an unclosed bracket is a character


def test_list_file_entries_are_relative_to_its_folder_and_deduplicated(tmp_path: Path, monkeypatch) -> None:
    make_tree(tmp_path)
    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "todo.txt"
    listing.write_text(f"# photos to do\n../a.jpg\n\n{tmp_path}/sub/c.jpeg\n  ../a.jpg  \n../notes.txt\n../missing.jpg\n")
    monkeypatch.chdir("/")  # relative entries do not depend on the current folder
    assert list_pictures(str(listing)) == sorted([str(tmp_path / "a.jpg"), str(tmp_path / "sub/c.jpeg"),
                                                  str(tmp_path / "notes.txt"), str(tmp_path / "missing.jpg")])
    uri_listing = list_pictures(f"file://{listing}")
    assert as_local(uri_listing) == list_pictures(str(listing))


def test_read_picture_through_a_file_uri_equals_the_local_read(tiny50: Path) -> None:
    photo = sorted((tiny50 / "val2017").glob("*.jpg"))[0]
    assert np.array_equal(read_picture(f"file://{photo}"), read_image(photo))
    with pytest.raises(UserError, match="missing.jpg"):
        read_picture(f"file://{photo.parent}/missing.jpg")


@pytest.mark.parametrize("case", ["missing", "empty_folder", "binary_list", "blank"])
def test_bad_sources_are_one_line_user_errors(case: str, tmp_path: Path) -> None:
    source = {"missing": str(tmp_path / "nope"), "empty_folder": str(tmp_path), "blank": " ",
              "binary_list": str(tmp_path / "list.bin")}[case]
    (tmp_path / "list.bin").write_bytes(b"\0\1\2") if case == "binary_list" else None
    with pytest.raises(UserError) as info:
        list_pictures(source)
    assert "\n" not in str(info.value)
