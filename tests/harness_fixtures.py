"""Shared set-up for the harness tests: Hydra configs with the test-only toy env and agents."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import toy_env
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TEST_CONF = TESTS / "harness_conf"
TOY = ["env=toy", "policy=constant", f"hydra.searchpath=[file://{TEST_CONF}]", "progress=false"]

# A script that registers the toy env, then runs a harness Hydra app with the command-line overrides.
# The main guard matters: spawned env workers import this script again.
TOY_APP = """
import sys
import toy_env
toy_env.install()
if __name__ == "__main__":
    if sys.argv.pop(1) == "sweep":
        from harness.sweep import main
    else:
        from harness.evaluate import main
    main()
"""


def toy_config(*overrides: str, name: str = "config") -> DictConfig:
    toy_env.install()
    with initialize_config_module("conf", version_base="1.3"):
        return compose(name, overrides=[*TOY, "runner.start_method=fork", *overrides])


def subprocess_env() -> dict[str, str]:
    """Environment for child Pythons: the toy module importable, and the repo's own packages first (the
    tests folder has a ``conf`` folder of its own that must not shadow the ``conf`` package)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(TESTS), env.get("PYTHONPATH", "")])
    return env


def toy_app_command(tmp: Path, app: str = "evaluate") -> list[str]:
    script = tmp / "toy_app.py"
    script.write_text(TOY_APP)
    return [sys.executable, str(script), app, *TOY]
