"""LIBERO-Long (LIBERO-10) on MuJoCo via hf-libero and robosuite: ``gym.make("VLA/LiberoLong-v0")``.

Importing this package does not import the simulator; :class:`vla_gym.libero.env.LiberoLongEnv` does, when
it builds its first task.
"""
