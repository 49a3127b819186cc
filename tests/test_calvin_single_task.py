"""CALVIN single-task episodes (protocol field ``tasks``): plan, digests, env resets and harness selection."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import vla_gym  # noqa: F401
from tasks.calvin import BENCHMARK, CHAIN_TASK, TASK_NAMES, chain_conditions, single_task_for
from tasks.plan import select
from vla_gym.calvin.conditions import load_chains
from vla_gym.calvin.sequences import successors

LIFT = "lift_red_block_table"


def test_chain_protocols_are_unchanged_by_the_field() -> None:
    for name in ("vlm4vla", "vlm4vla_static"):
        protocol = BENCHMARK.protocol(name)
        assert "tasks" not in protocol.to_dict()
        plan = BENCHMARK.episode_plan(protocol)
        assert len(plan) == 1000 and {key.task for key in plan} == {CHAIN_TASK}
    single = BENCHMARK.protocol("vlm4vla_static", tasks=[LIFT])
    assert single.tasks == (LIFT,) and single.to_dict()["tasks"] == [LIFT]
    assert single.digest != BENCHMARK.protocol("vlm4vla_static").digest
    assert single.digest != BENCHMARK.protocol("vlm4vla_static", tasks=["open_drawer"]).digest
    with pytest.raises(ValueError, match="unknown CALVIN task"):
        BENCHMARK.protocol("vlm4vla_static", tasks=["lift_the_moon"])


def test_plan_keeps_the_scenes_where_the_task_applies(shared_data: Path) -> None:
    chains = load_chains(shared_data / "calvin")
    assert chain_conditions(1000) == [condition for condition, _ in chains]  # no chains file needed
    plan = BENCHMARK.episode_plan(BENCHMARK.protocol("vlm4vla_static", tasks=[LIFT]))
    kept = {key.index for key in plan}
    assert 200 < len(plan) < 1000
    for k, (condition, _) in enumerate(chains):
        assert (k in kept) == (condition["red_block"] == "table")
    assert all(key.within_task == key.index and key.task == LIFT for key in plan)
    assert {key.task_index for key in plan} == {TASK_NAMES.index(LIFT)}
    # a task family: each scene gets the one that applies (the slider is left or right in every scene)
    both = BENCHMARK.episode_plan(BENCHMARK.protocol("vlm4vla", tasks=["move_slider_left", "move_slider_right"]))
    assert len(both) == 1000
    for key in both[:50]:
        assert len(successors(chains[key.index][0], key.task)) == 1
        assert single_task_for(chains[key.index][0], ("move_slider_left", "move_slider_right")) == key.task
    # the harness's selection works on task names and per-task counts
    first = select(plan, tasks=[LIFT], episodes_per_task=3)
    assert [key.index for key in first] == sorted(kept)[:3]


def test_env_runs_the_plans_single_task(shared_data: Path) -> None:
    env = gym.make(
        "VLA/Calvin-v0", data_dir=str(shared_data / "calvin"), protocol="vlm4vla_static",
        protocol_overrides={"tasks": [LIFT], "max_steps_per_subtask": 2},
    )
    try:
        plan = env.unwrapped.episode_plan
        k = plan[1].index
        obs, info = env.reset(options={"episode": k})
        assert info["episode"] == k and tuple(env.unwrapped.chain_tasks) == (LIFT,) and obs["language"] == "grasp and lift the red block"
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step([0, 0, 0, 0, 0, 0, 1])
            done = terminated or truncated
        assert info["episode_metrics"]["chain_tasks"] == [LIFT] and info["episode_metrics"]["chain_length"] == 0
        outside = min(set(range(1000)) - {key.index for key in plan})
        with pytest.raises(ValueError, match="not in the vlm4vla_static plan"):
            env.reset(options={"episode": outside})
        _, info = env.reset(seed=3)
        assert info["episode"] in {key.index for key in plan} and tuple(env.unwrapped.chain_tasks) == (LIFT,)
    finally:
        env.close()
