"""vla-gym: one Gymnasium API over LIBERO-Long, CALVIN ABC->D and SimplerEnv-Bridge.

Importing this package registers the envs; simulators are imported only when an env is built.
"""

from __future__ import annotations

import gymnasium as gym

__version__ = "0.1.0"

ENV_IDS = {
    "libero_long": "VLA/LiberoLong-v0",
    "calvin": "VLA/Calvin-v0",
    "simpler_bridge": "VLA/SimplerBridge-v0",
    "libero_spatial": "VLA/LiberoSpatial-v0",
    "libero_object": "VLA/LiberoObject-v0",
    "libero_goal": "VLA/LiberoGoal-v0",
    "libero_90": "VLA/Libero90-v0",
}

_ENTRY_POINTS = {
    "VLA/LiberoLong-v0": "vla_gym.libero.env:LiberoLongEnv",
    "VLA/Calvin-v0": "vla_gym.calvin.env:CalvinEnv",
    "VLA/SimplerBridge-v0": "vla_gym.bridge.env:SimplerBridgeEnv",
    "VLA/LiberoSpatial-v0": "vla_gym.libero.env:LiberoSpatialEnv",
    "VLA/LiberoObject-v0": "vla_gym.libero.env:LiberoObjectEnv",
    "VLA/LiberoGoal-v0": "vla_gym.libero.env:LiberoGoalEnv",
    "VLA/Libero90-v0": "vla_gym.libero.env:Libero90Env",
}


def _register() -> None:
    for env_id, entry_point in _ENTRY_POINTS.items():
        if env_id not in gym.registry:
            # No TimeLimit wrapper: each env truncates itself at its protocol's step limit.
            gym.register(id=env_id, entry_point=entry_point)


_register()
