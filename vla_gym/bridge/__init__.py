"""SimplerEnv-Bridge on ManiSkill3: ``VLA/SimplerBridge-v0`` (:class:`vla_gym.bridge.env.SimplerBridgeEnv`).

Light to import: SAPIEN and ManiSkill load only when the first scene is built.
"""
