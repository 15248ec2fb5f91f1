"""Marks the process tests share: the engines each runs on, and the system programs some need."""

from __future__ import annotations

import os
import shutil

import pytest

ENGINES = [
    "sqlite",
    pytest.param(
        "postgresql",
        marks=pytest.mark.skipif(
            not os.environ.get("TEST_DATABASE_URL"), reason="PostgreSQL tests need TEST_DATABASE_URL"
        ),
    ),
]


def requires_program(name: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which(name) is None, reason=f"{name} is not installed")
