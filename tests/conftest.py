"""Shared fixtures: the location of ../shared/data, and a fixed torch thread count."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository (CI places shared/ there)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA}: clone the repo next to shared/")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny50(shared_data: Path) -> Path:
    return shared_data / "coco_val2017_tiny50"
