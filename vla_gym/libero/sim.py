"""Thin functions around hf-libero's ``OffScreenRenderEnv``: building it, the pinned hard reset, snapshots.

Reproducibility: LIBERO's placement samplers draw from numpy's *global* RNG, and a hard reset re-places
some fixtures (cabinet, wine rack, stove) that the init state does not cover (they are model body poses,
not joint states). Worse, every hard reset appends another set of articulated-object samplers to
``object_property_initializers`` (it is never cleared), so each reset draws more numbers than the one
before and the fixture layout depends on how many resets the env instance has done.

So every hard reset here (a) trims that list back to its length right after construction and (b) runs with
the global RNG seeded to the protocol's ``fixture_seed``, restoring the caller's RNG state afterwards. With
``fixture_seed=0`` every episode gets exactly the scene of the VLM4VLA paper's first trial of its task (the
paper builds the env, calls ``env.seed(0)``, i.e. ``np.random.seed(0)``, then ``reset()``); the paper's later
trials drew from a continuing RNG with a growing sampler list, which no order-independent plan can repeat.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tasks.libero_long import LiberoLongProtocol
from vla_gym.libero.assets import import_libero
from vla_gym.libero.suite import bddl_path


@contextlib.contextmanager
def pinned_global_rng(seed: int) -> Iterator[None]:
    """Run the block with ``np.random`` seeded to ``seed``; restore the caller's global RNG state after."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def build(task_name: str, protocol: LiberoLongProtocol, assets: Path) -> Any:
    """hf-libero's ``OffScreenRenderEnv`` for the task, configured as the protocol says."""
    import_libero(assets)
    from libero.libero.envs import OffScreenRenderEnv

    with pinned_global_rng(protocol.fixture_seed):
        raw = OffScreenRenderEnv(
            bddl_file_name=str(bddl_path(task_name)),
            camera_names=list(protocol.cameras),
            camera_heights=protocol.render_size,
            camera_widths=protocol.render_size,
            controller=protocol.controller,
            control_freq=protocol.control_freq,
            hard_reset=protocol.hard_reset,
        )
    raw._vla_gym_initializers = len(raw.env.object_property_initializers)
    return raw


def pinned_reset(raw: Any, fixture_seed: int) -> None:
    """Hard reset (reloads the model, re-places fixtures) that is the same every time: the sampler list
    trimmed to its post-construction length, the placement RNG pinned."""
    initializers = raw.env.object_property_initializers
    del initializers[raw._vla_gym_initializers :]
    with pinned_global_rng(fixture_seed):
        raw.reset()


def snapshot(raw: Any) -> dict[str, np.ndarray]:
    """Everything that defines the simulator's state: the flattened MuJoCo state (time, qpos, qvel) and the
    model's body poses (fixtures are placed there, outside the state vector)."""
    sim = raw.sim
    return {
        "state": np.asarray(sim.get_state().flatten(), dtype=np.float64).copy(),
        "body_pos": np.array(sim.model.body_pos, copy=True),
        "body_quat": np.array(sim.model.body_quat, copy=True),
    }
