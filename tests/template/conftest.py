"""The template's own tests: they bake projects from this checkout and are never shipped.

The slow one (marked `slow`) bakes projects and runs their whole `./scripts/test`, suites as
large as this one. It is collected first, so that it starts at once, on the first
pytest-xdist worker, while the others take the rest of the suite.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.template.baking import ROOT, run


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: bakes projects and runs their whole suites; collected first"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every locked wheel, downloaded once: generated projects bootstrap from here alone
    (`PIP_NO_INDEX`), so the network is used once per run, not once per project."""
    wheels = tmp_path_factory.mktemp("wheelhouse")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--requirement",
            ROOT / "requirements" / "dev.txt",
            "--dest",
            wheels,
        ],
        cwd=ROOT,
        env=dict(os.environ),
    )
    return wheels
