"""CALVIN ABC->D (scene D) on PyBullet: world, robot, cameras, task checks, initial conditions and assets.

The env is ``vla_gym.calvin.env:CalvinEnv`` (``VLA/Calvin-v0``); PyBullet is imported only by its modules.
"""
