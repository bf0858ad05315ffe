"""Shared fixtures: where the real sample data lives, and a skip when it is absent."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
SHARED = Path(os.environ.get("POSEKIT_SHARED", REPO.parent / "shared")) / "data"


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared real-data folder beside the repository)")
    return path


@pytest.fixture
def test_data() -> Path:
    """Small real files shipped with the repository (tests/data, see its PROVENANCE.md)."""
    return TEST_DATA


@pytest.fixture
def shared_real() -> Path:
    """../shared/data/real: the real dataset samples; skips when absent."""
    return _need(SHARED / "real")


@pytest.fixture
def shared_mocap() -> Path:
    """../shared/data/mocap: real CMU motion capture; skips when absent."""
    return _need(SHARED / "mocap")
