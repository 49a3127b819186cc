"""Short harness evaluations on the real LIBERO-Long env; what an agent declares it needs reaches it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import imageio.v2 as imageio
import numpy as np
import pytest
import toy_env
from hydra import compose, initialize_config_module

from harness.evaluate import evaluate, run_into_store
from harness.metrics import summarize
from harness.report import write_report
from harness.runner import AgentSource
from harness.spec import resolve, run_info, runner_from_cfg
from harness.store import ResultStore, read_records
from policies.base import Agent, Observation
from tasks.libero_long import TASK_NAMES, instruction


def test_libero_long_short_evaluation(tmp_path: Path) -> None:
    with initialize_config_module("conf", version_base="1.3"):
        cfg = compose("config", overrides=[
            "env=libero_long", "policy=noop", "episodes=[0,1]", "num_envs=1", f"output_dir={tmp_path}",
            "+env.protocol_overrides.max_steps=3", "video.episodes_per_task=1", "progress=false",
        ])  # fmt: skip
    spec = resolve(cfg)
    assert [k.index for k in spec.episodes] == [0, 1] and spec.protocol.max_steps == 3
    # the paper's loop: its counter runs to max_steps + 10 and 5 interleaved no-ops take some of it
    steps = spec.protocol.max_policy_steps
    assert steps == 8
    assert "native_image" not in spec.env.kwargs  # the noop policy declares no need for it
    agent = toy_env.ConstantAgent(w=0.0)  # zero motion, gripper open: a no-op that records what it saw
    info = run_info(spec, {"_target_": "toy_env.ConstantAgent", "w": 0.0}, int(cfg.seed))
    with ResultStore(tmp_path, info) as store, runner_from_cfg(cfg, spec) as runner:
        ran = run_into_store(runner, store, spec.episodes, AgentSource(lambda: agent), videos_per_task=1)
        records = store.select([0, 1])
    assert ran == 2
    for record in records:
        assert (record.status, record.success, record.truncated, record.steps) == ("ok", False, True, steps), record
        assert record.task == TASK_NAMES[0]
        assert record.episode_metrics["policy_steps"] == steps and record.episode_metrics["settle_steps"] == 5
    languages = {text for _, batch in agent.calls for text in batch}
    assert languages == {instruction(TASK_NAMES[0])}  # the instruction arrived, not blanked
    assert sum(len(ids) for ids in agent.resets) == 2
    metrics = summarize(records, spec.benchmark, planned=2)
    paths = write_report(tmp_path, info, metrics, records)
    assert json.loads(paths["results"].read_text())["metrics"]["overall"] == {
        "n": 2, "successes": 0, "rate": 0.0, "errors": 0, "ci95": [0.0, metrics["overall"]["ci95"][1]],
    }  # fmt: skip
    frames = imageio.mimread(tmp_path / "videos" / f"episode_00000_{TASK_NAMES[0]}.mp4")
    assert len(frames) == steps + 1 and frames[0].shape == (224, 224, 3) and frames[0].std() > 5  # a rendered scene
    assert [r.episode for r in read_records(tmp_path)] == [0, 1]


class NativeImageAgent(Agent):
    """Holds still and checks that the harness gave it the native render it declares it needs."""

    needs_native_image = ("libero_long",)
    seen: ClassVar[list[tuple[int, ...]]] = []

    def __init__(self, **_: Any) -> None:
        pass

    def act(self, obs: Observation, env_ids: Sequence[int]) -> np.ndarray:
        native = obs["image_native"]  # KeyError (an agent error in the record) when the harness forgot it
        assert native.dtype == np.uint8 and native.shape == (len(env_ids), 256, 256, 3)
        assert obs["image"].shape == (len(env_ids), 224, 224, 3) and native.std() > 5  # a rendered scene
        NativeImageAgent.seen.append(native.shape)
        action = np.zeros((len(env_ids), 1, 7), dtype=np.float32)
        action[..., 6] = 1.0
        return action


def _native_cfg(tmp_path: Path, *overrides: str):
    with initialize_config_module("conf", version_base="1.3"):
        return compose("config", overrides=[
            "policy=noop", "policy._target_=test_harness_libero.NativeImageAgent", "num_envs=1",
            f"output_dir={tmp_path}", "progress=false", *overrides,
        ])  # fmt: skip


def test_an_agent_that_needs_the_native_image_gets_it_through_evaluate(tmp_path: Path) -> None:
    NativeImageAgent.seen.clear()
    cfg = _native_cfg(
        tmp_path, "env=libero_long", "episodes=[0]", "+env.protocol_overrides.max_steps=3",
        "+env.protocol_overrides.settle_steps=2",
    )  # fmt: skip
    assert resolve(cfg).env.kwargs["native_image"] is True  # turned on without +env.kwargs.native_image
    metrics = evaluate(cfg)
    assert metrics["overall"]["errors"] == 0 and metrics["episodes"] == 1
    record = read_records(tmp_path)[0]
    assert (record.status, record.steps) == ("ok", 4)  # 3 + 2 - 1 interleaved no-op
    assert NativeImageAgent.seen == [(1, 256, 256, 3)] * 4


def test_an_env_that_cannot_give_what_the_agent_needs_is_refused_before_any_episode(tmp_path: Path) -> None:
    NativeImageAgent.needs_native_image = True  # now on every benchmark
    try:
        with pytest.raises(ValueError, match="cannot give it"):
            resolve(_native_cfg(tmp_path, "env=calvin"))
    finally:
        NativeImageAgent.needs_native_image = ("libero_long",)
    assert "native_image" not in resolve(_native_cfg(tmp_path, "env=calvin")).env.kwargs  # not needed there
    with pytest.raises(ValueError, match="native_image=False"):
        resolve(_native_cfg(tmp_path, "env=libero_long", "+env.kwargs.native_image=false"))
    assert not (tmp_path / "results.json").exists()
