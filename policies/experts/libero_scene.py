"""The privileged keys the LIBERO expert plans with (NOT available to real policies).

``LiberoLongEnv.privileged_state()`` gives them all (see ``vla_gym.libero.sim.scene_geometry``): object and
fixture poses, joint qpos, the end effector, the goal predicates, and the scene geometry (BDDL region
sites, collision boxes, joint frames, moving bodies, robot base). Nothing here reads the simulator.
"""

from __future__ import annotations

from typing import Any

#: keys beyond poses/joints/robot/goal that the planner needs (the env's scene geometry)
EXTRA_KEYS = ("sites", "boxes", "joint_frames", "bodies", "robot_base")


def privileged(env: Any) -> dict[str, Any]:
    """The env's ``privileged_state()``, checked to carry the scene geometry the planner needs."""
    state = env.unwrapped.privileged_state()
    missing = [k for k in EXTRA_KEYS if k not in state]
    if missing:
        raise KeyError(f"{type(env.unwrapped).__name__}.privileged_state() lacks {missing}: the LIBERO expert "
                       "needs an env that reports the scene geometry (vla_gym.libero.sim.scene_geometry)")
    return state
