"""VLA/SimplerBridge-v0: episode k is bitwise the same whatever ran before it, and equals ManiSkill3's own env.

- Scrambled order: one env runs episodes of all four tasks interleaved, repeated, with random actions in
  between; each episode (object, TCP and finger state and the image, at the reset and after a few native
  actions) must equal the same episode in a freshly made env.
- ManiSkill3: for (task, episode) pairs whose layouts coincide with ManiSkill3's (spoon, carrot, stack; the
  eggplant under ManiSkill3's own 8 x 8 layouts), reset + native actions equal ManiSkill3's env made fresh.

Both use the ``fast`` protocol (224x224 renders) to stay cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import vla_gym  # noqa: F401  (registers the envs)
from tasks.simpler_bridge import TASK_NAMES

PROBE_STEPS = 3


def _probe_actions(steps: int, seed: int = 7) -> np.ndarray:
    """Native ManiSkill actions (dxyz, axis-angle, gripper) that move the arm and close the gripper."""
    rng = np.random.default_rng(seed)
    out = np.zeros((steps, 7), dtype=np.float32)
    out[:, :3] = rng.uniform(-0.02, 0.02, (steps, 3))
    out[:, 3:6] = rng.uniform(-0.1, 0.1, (steps, 3))
    out[:, 6] = np.where(np.arange(steps) % 4 < 2, 1.0, -1.0)
    return out


def _snapshot(env: gym.Env, image: np.ndarray) -> dict[str, np.ndarray]:
    state = env.unwrapped.privileged_state()
    snap = {f"pose:{name}": pose for name, pose in state["object_poses"].items()}
    snap.update(tcp=state["tcp_pose"], fingers=state["gripper_qpos"], image=image.copy())
    return snap


def _run(env: gym.Env, task: str, episode_id: int, actions: np.ndarray) -> list[dict[str, np.ndarray]]:
    obs, _ = env.reset(options={"task": task, "episode_id": episode_id})
    snaps = [_snapshot(env, obs["image"])]
    for a in actions:
        obs, *_ = env.step(a)
        snaps.append(_snapshot(env, obs["image"]))
    return snaps


def _assert_same(got: list[dict[str, np.ndarray]], want: list[dict[str, np.ndarray]], what: str) -> None:
    assert len(got) == len(want)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.keys() == w.keys()
        for key in w:
            np.testing.assert_array_equal(g[key], w[key], err_msg=f"{what}, step {step}, {key}")


# (task, episode_id) pairs checked against a fresh env, and the order one env runs them in (with repeats
# and other episodes, whose random actions the checked ones must not feel, in between)
CHECKED = [(task, ep) for task in TASK_NAMES for ep in (1, 23)]
SCRAMBLED = [
    ("spoon_on_towel", 14),
    ("spoon_on_towel", 1),
    ("eggplant_in_basket", 23),
    ("carrot_on_plate", 5),
    ("spoon_on_towel", 23),
    ("stack_cube", 23),
    ("eggplant_in_basket", 4),
    ("carrot_on_plate", 23),
    ("stack_cube", 1),
    ("spoon_on_towel", 1),
    ("eggplant_in_basket", 1),
    ("carrot_on_plate", 1),
]


def test_episodes_in_scrambled_order_equal_fresh_envs_bitwise(shared_data: Path) -> None:
    tree = shared_data / "bridge"
    probe = _probe_actions(PROBE_STEPS)
    stir = np.random.default_rng(1)
    env = gym.make("VLA/SimplerBridge-v0", protocol="fast", action_mode="native", assets_dir=tree)
    scrambled: dict[tuple[str, int], list[list[dict[str, np.ndarray]]]] = {}
    try:
        for task, ep in SCRAMBLED:
            scrambled.setdefault((task, ep), []).append(_run(env, task, ep, probe))
            for _ in range(4):  # leave the scene in some other state before the next episode
                env.step(np.r_[stir.uniform(-0.03, 0.03, 3), stir.uniform(-0.2, 0.2, 3), stir.choice([-1.0, 1.0])])
        assert env.unwrapped._scenes["spoon_on_towel"].rebuilds == 3  # each later spoon episode rebuilt
    finally:
        env.close()
    assert set(CHECKED) <= set(scrambled)
    for task, ep in CHECKED:
        fresh_env = gym.make("VLA/SimplerBridge-v0", protocol="fast", action_mode="native", assets_dir=tree)
        try:
            fresh = _run(fresh_env, task, ep, probe)
        finally:
            fresh_env.close()
        for i, run in enumerate(scrambled[(task, ep)]):
            _assert_same(run, fresh, f"{task} episode {ep}, run {i} in the scrambled env vs a fresh env")


# ---------------------------------------------------------------------------------------------------------
MANISKILL3_CLASSES = {  # the classes behind PutSpoonOnTableClothInScene-v1 etc.
    "spoon_on_towel": "PutSpoonOnTableClothInScene",
    "carrot_on_plate": "PutCarrotOnPlateInScene",
    "stack_cube": "StackGreenCubeOnYellowCubeBakedTexInScene",
    "eggplant_in_basket": "PutEggplantInBasketScene",
}
MS3_STEPS = 20


def _maniskill3_run(
    task: str,
    episode_id: int,
    data_root: Path,
    protocol: Any,
    actions: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> list[dict[str, np.ndarray]]:
    """ManiSkill3's own env, made fresh, reset to ``episode_id``, then ``actions``. Its class is built
    directly (``gym.make`` would look for the assets under ManiSkill's fixed asset folder)."""
    import torch
    from mani_skill.envs.tasks.digital_twins.base_env import BaseDigitalTwinEnv
    from mani_skill.envs.tasks.digital_twins.bridge_dataset_eval import put_on_in_scene

    from vla_gym.bridge.scenes import asset_root, camera_config

    # ManiSkill keeps its green-screen lists on the class: an env made earlier in this process (another
    # task) would leave its objects in them. Start from the state of a new process.
    monkeypatch.setattr(BaseDigitalTwinEnv, "_objects_to_remove_from_greenscreen", [])
    monkeypatch.setattr(BaseDigitalTwinEnv, "_rgb_overlay_images", {})

    camera = camera_config(protocol)
    with asset_root(data_root):
        env = getattr(put_on_in_scene, MANISKILL3_CLASSES[task])(
            obs_mode="rgb+segmentation",
            num_envs=1,
            sim_backend="physx_cpu",
            render_backend="gpu" if torch.cuda.is_available() else "cpu",
            sensor_configs=camera,
        )
    try:
        u = env
        obs, _ = env.reset(options={"episode_id": episode_id})

        def snap(obs: dict) -> dict[str, np.ndarray]:
            out = {f"pose:{n}": a.pose.raw_pose[0].cpu().numpy().astype(np.float64) for n, a in u.objs.items()}
            out["tcp"] = u.agent.robot.links_map["ee_gripper_link"].pose.raw_pose[0].cpu().numpy().astype(np.float64)
            out["frame"] = obs["sensor_data"][protocol.camera]["rgb"][0].cpu().numpy()
            return out

        snaps = [snap(obs)]
        for a in actions:
            obs, *_ = env.step(torch.as_tensor(a[None]))
            snaps.append(snap(obs))
        return snaps
    finally:
        env.close()


@pytest.mark.parametrize("task", TASK_NAMES)
def test_reset_and_native_actions_equal_maniskill3_env(
    shared_data: Path, task: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = shared_data / "bridge"
    overrides = {"eggplant_layouts": "maniskill3_8x8"} if task == "eggplant_in_basket" else None
    episode_id = 13
    actions = _probe_actions(MS3_STEPS, seed=3)
    env = gym.make(
        "VLA/SimplerBridge-v0",
        protocol="fast",
        protocol_overrides=overrides,
        action_mode="native",
        assets_dir=tree,
        render_mode="rgb_array",
    )
    try:
        u = env.unwrapped
        env.reset(options={"task": task, "episode_id": 3})  # an episode before, so episode 13 is a rebuild
        env.reset(options={"task": task, "episode_id": episode_id})
        ours = []

        def snap() -> dict[str, np.ndarray]:
            state = u.privileged_state()
            out = {f"pose:{n}": p for n, p in state["object_poses"].items()}
            out.update(tcp=state["tcp_pose"], frame=env.render())
            return out

        ours.append(snap())
        for a in actions:
            env.step(a)
            ours.append(snap())
        theirs = _maniskill3_run(task, episode_id, u.asset_dir, u.protocol, actions, monkeypatch)
    finally:
        env.close()
    _assert_same(ours, theirs, f"{task} episode {episode_id} vs ManiSkill3's {MANISKILL3_CLASSES[task]}")
