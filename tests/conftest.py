"""Shared test set-up: headless rendering, one torch thread, and where the shared benchmark data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

REPO_ROOT = Path(__file__).resolve().parents[1]
# Benchmark data files for tests and CI only (never committed): a sibling folder of the checkout.
SHARED_DATA = Path(os.environ.get("VLA_GYM_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(
            f"test data folder {SHARED_DATA} is missing: set VLA_GYM_TEST_DATA to the shared data folder"
        )
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


@pytest.fixture
def serving():  # noqa: ANN201 - a factory of started policy servers
    """``serving(agent, **kwargs)`` starts a policy server on a free loopback port; all stop after the test."""
    from harness.serve import PolicyServer

    servers: list[PolicyServer] = []

    def start(agent, **kwargs) -> PolicyServer:  # noqa: ANN001
        server = PolicyServer(agent, port=0, log_every_s=0, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
