"""Thin functions around hf-libero's ``OffScreenRenderEnv``: building it, the pinned hard reset, snapshots.

Reproducibility: LIBERO's placement samplers draw from numpy's *global* RNG, and a hard reset re-places
some fixtures (cabinet, wine rack, stove) that the init state does not cover (they are model body poses,
not joint states). Worse, every hard reset appends another set of articulated-object samplers to
``object_property_initializers`` (it is never cleared), so each reset draws more numbers than the one
before and the fixture layout depends on how many resets the env instance has done.

So every hard reset here (a) trims that list back to its length right after construction and (b) runs with
the global RNG seeded to the protocol's ``fixture_seed``, restoring the caller's RNG state afterwards. With
``fixture_seed=0`` every episode gets exactly the scene of the VLM4VLA paper's (and OpenVLA's) first trial of
its task (they build the env, call ``env.seed(0)``, i.e. ``np.random.seed(0)``, then ``reset()``; openpi seeds
7); their later trials drew from a continuing RNG with a growing sampler list, which no order-independent plan
can repeat.
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


def scene_geometry(raw: Any) -> dict[str, Any]:
    """Geometry a scripted expert plans with, read-only, as plain arrays (world frame unless said otherwise).

    ``sites`` {BDDL region: {"pos", "mat" (3x3), "size" (half-sizes), "joints" (articulations it rides on)}};
    ``boxes`` {object or fixture: {"center", "half"}}: the axis-aligned box of its collision geoms in its
    own body frame; ``joint_frames`` {joint: {"anchor", "axis", "type" ("slide" | "hinge"), "object"}} for
    every non-free object/fixture joint; ``bodies`` {moving body of such a joint: {"pos", "mat", "center",
    "half", "joint"}}; ``robot_base`` (3,) the robot's root body position.
    """
    sim, task = raw.sim, raw.env
    model, data = sim.model, sim.data
    sites = {}
    for name, site in task.object_sites_dict.items():
        sid = model.site_name2id(name)
        sites[name] = {
            "pos": np.array(data.site_xpos[sid]),
            "mat": np.array(data.site_xmat[sid]).reshape(3, 3),
            "size": np.asarray(site.size, dtype=np.float64),
            "joints": list(getattr(site, "joints", None) or []),
        }
    boxes: dict[str, Any] = {}
    joint_frames: dict[str, Any] = {}
    bodies: dict[str, Any] = {}
    for group in (task.objects_dict, task.fixtures_dict):
        for name, obj in group.items():
            center, half = _cached_box(raw, task.obj_body_id[name])
            boxes[name] = {"center": center, "half": half}
            for joint in getattr(obj, "joints", None) or []:
                jid = model.joint_name2id(joint)
                if int(model.jnt_type[jid]) == 0:  # free joint: the object's pose is its body pose already
                    continue
                joint_frames[joint] = {
                    "anchor": np.array(data.xanchor[jid]),
                    "axis": np.array(data.xaxis[jid]),
                    "type": "slide" if int(model.jnt_type[jid]) == 2 else "hinge",
                    "object": name,
                }
                moving = int(model.jnt_bodyid[jid])
                c, h = _cached_box(raw, moving)
                bodies[model.body_id2name(moving)] = {
                    "pos": np.array(data.xpos[moving]),
                    "mat": np.array(data.xmat[moving]).reshape(3, 3),
                    "center": c,
                    "half": h,
                    "joint": joint,
                }
    base = model.body_name2id(task.robots[0].robot_model.root_body)
    return {
        "sites": sites,
        "boxes": boxes,
        "joint_frames": joint_frames,
        "bodies": bodies,
        "robot_base": np.array(data.xpos[base]),
    }


def _cached_box(raw: Any, body: int) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame boxes are constant for a loaded model; cached on the env against the model object (a hard
    reset loads a new one)."""
    model = raw.sim.model
    cache = getattr(raw, "_vla_gym_boxes", None)
    if cache is None or cache[0] is not model:
        cache = (model, {})
        raw._vla_gym_boxes = cache
    boxes = cache[1]
    if body not in boxes:
        boxes[body] = _local_box(model, raw.sim.data, body)
    return boxes[body]


def _subtree(model: Any, root: int) -> set[int]:
    out = {root}
    for b in range(model.nbody):
        p = b
        while p != 0 and p != root:
            p = int(model.body_parentid[p])
        if p == root:
            out.add(b)
    return out


def _local_box(model: Any, data: Any, body: int) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned box (centre, half-size) of the collision geoms of ``body``'s subtree, in its frame."""
    body_pos = np.asarray(data.xpos[body])
    body_rot = np.asarray(data.xmat[body]).reshape(3, 3)
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
    subtree = _subtree(model, body)
    for g in range(model.ngeom):
        if int(model.geom_bodyid[g]) not in subtree:
            continue
        if model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 0:
            continue  # visual-only geom
        aabb = np.asarray(model.geom_aabb[g]).reshape(2, 3)  # centre, half-size in the geom frame
        rot = np.asarray(data.geom_xmat[g]).reshape(3, 3)
        corners = np.asarray(data.geom_xpos[g]) + (aabb[0] + signs * aabb[1]) @ rot.T
        local = (corners - body_pos) @ body_rot
        lo = np.minimum(lo, local.min(axis=0))
        hi = np.maximum(hi, local.max(axis=0))
    if not np.all(np.isfinite(lo)):
        return np.zeros(3), np.zeros(3)
    return (lo + hi) / 2, (hi - lo) / 2
