"""Fixtures for integration tests: a private copy of the small company's extracts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.support import copy_extracts


@pytest.fixture
def landing(small_company, tmp_path) -> Path:
    return copy_extracts(small_company, tmp_path / "landing")
