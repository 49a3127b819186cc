"""Fine-tune a residual policy with tianshou's PPO over a mis-calibrated scripted controller, on CALVIN.

The base controller is vla-gym's scripted CALVIN expert with a constant calibration error added to every
action (``--bias``, default +0.15 on y: the arm drifts sideways). A small Gaussian MLP policy outputs a
residual (scaled by ``--residual-scale``) that is added to the base action; PPO trains it on the env's own
reward (1.0 per solved subtask; chains of length 1, so an episode's return is its success). The learner
sees ``proprio`` (CALVIN's 15-float robot state) only. The residual should learn to cancel the bias, and the
success rate should climb back towards the unbiased expert's.

Runs on a CPU in a few minutes with the defaults (2 envs, 4 episodes per update, 8 updates, small renders)::

    python examples/tianshou_residual_ppo.py --data-dir ../shared/data/calvin

Prints one line per update: update, episodes, success rate of the collected episodes, mean residual on
the biased axis. With a GPU and a real backbone, the same loop applies: put the VLA's action head (or a
LoRA) in the actor instead of the MLP, feed it ``image`` / ``language`` (``vla_gym.rl.TianshouReady`` gives
fixed-shape observations for any vector env), and use ``SubprocVectorEnv`` / ``rl.SpawnShmemVectorEnv``
with more envs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tianshou.algorithm import PPO
from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.utils.net.common import Net
from tianshou.utils.net.continuous import ContinuousActorProbabilistic, ContinuousCritic

import vla_gym  # noqa: F401  (registers the envs)
from policies.expert import ExpertAgent
from vla_gym.calvin.env import PROPRIO_DIM
from wrappers.episodes import AssignedEpisodes


class ResidualOverBase(gym.Wrapper):
    """Action = base controller (expert + bias) + ``scale`` * residual; observation = ``proprio``."""

    def __init__(self, env: gym.Env, bias: np.ndarray, scale: float) -> None:
        super().__init__(env)
        self.bias = bias.astype(np.float32)
        self.scale = float(scale)
        self.expert = ExpertAgent()
        self.expert.configure("calvin", env.unwrapped.protocol.to_dict())  # type: ignore[attr-defined]
        self.observation_space = env.observation_space["proprio"]
        self.action_space = gym.spaces.Box(-1.0, 1.0, (7,), np.float32)
        self._obs: dict[str, Any] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.expert.reset([0])
        self._obs = obs
        return obs["proprio"], info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        batch = {k: np.asarray(v)[None] for k, v in self._obs.items() if k != "language"}
        batch["language"] = [self._obs["language"]]
        batch["privileged"] = [self.env.unwrapped.privileged_state()]  # type: ignore[attr-defined]
        base = self.expert.act(batch, [0])[0, 0] + self.bias
        residual = self.scale * np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        obs, reward, terminated, truncated, info = self.env.step(base + residual)
        self._obs = obs
        return obs["proprio"], float(reward), terminated, truncated, info


def make_env(data_dir: str, episodes: list[int], bias: np.ndarray, scale: float) -> gym.Env:
    env = gym.make(
        "VLA/Calvin-v0",
        data_dir=data_dir,
        protocol="vlm4vla_static",
        proprio=True,
        protocol_overrides={"chain_length": 1, "max_steps_per_subtask": 100, "static_size": 32, "image_size": 32},
    )
    return ResidualOverBase(AssignedEpisodes(env, episodes), bias, scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="../shared/data/calvin")
    parser.add_argument("--bias", default="0,0.15,0,0,0,0,0", help="calibration error added to the expert")
    parser.add_argument("--residual-scale", type=float, default=0.5)
    parser.add_argument("--envs", type=int, default=2)
    parser.add_argument("--episodes-per-update", type=int, default=4)
    parser.add_argument("--updates", type=int, default=8)
    parser.add_argument("--chains", type=int, default=16, help="train on the first task of chains 0..n-1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    bias = np.array([float(x) for x in args.bias.split(",")], dtype=np.float32)
    # every env cycles through its share of the chains (enough repeats for all updates)
    repeats = args.updates * args.episodes_per_update // args.chains + 2
    plan = list(range(args.chains)) * repeats
    shares = [plan[i :: args.envs] for i in range(args.envs)]

    def env_fn(i: int) -> Any:
        return lambda: make_env(args.data_dir, shares[i], bias, args.residual_scale)

    venv = DummyVectorEnv([env_fn(i) for i in range(args.envs)])
    obs_dim = PROPRIO_DIM
    actor = ContinuousActorProbabilistic(
        preprocess_net=Net(state_shape=obs_dim, hidden_sizes=[64]), action_shape=7, unbounded=True
    )
    # start as "no correction": zero mean residual, small exploration noise (std 0.2 -> 0.1 after scaling)
    last = [m for m in actor.mu.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    torch.nn.init.constant_(actor.sigma_param, float(np.log(0.2)))
    critic = ContinuousCritic(preprocess_net=Net(state_shape=obs_dim, hidden_sizes=[64]))

    def dist_fn(loc_scale: tuple[torch.Tensor, torch.Tensor]) -> torch.distributions.Distribution:
        loc, scale = loc_scale
        return torch.distributions.Independent(torch.distributions.Normal(loc, scale), 1)

    policy = ProbabilisticActorPolicy(
        actor=actor, dist_fn=dist_fn, action_space=gym.spaces.Box(-1.0, 1.0, (7,), np.float32), action_scaling=False,
        action_bound_method=None,
    )
    algorithm = PPO(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=3e-3), gamma=0.99)
    collector = Collector(algorithm, venv, VectorReplayBuffer(20000, args.envs))
    collector.reset()
    start = time.time()
    for update in range(args.updates + 1):
        collector.reset_buffer()
        stats = collector.collect(n_episode=args.episodes_per_update, reset_before_collect=False)
        success = float(np.mean(stats.returns > 0))
        buf = collector.buffer
        mean_residual = args.residual_scale * np.clip(buf.act[buf.sample_indices(0)], -1, 1).mean(axis=0)
        print(
            f"update {update:2d}  episodes {stats.n_collected_episodes}  success {success:.2f}  "
            f"mean residual xyz {' '.join(f'{v:+.3f}' for v in mean_residual[:3])}  "
            f"t={time.time() - start:.0f}s",
            flush=True,
        )
        if update < args.updates:
            policy.is_within_training_step = True
            algorithm.update(buffer=collector.buffer, batch_size=64, repeat=4)
            policy.is_within_training_step = False
    venv.close()


if __name__ == "__main__":
    main()
