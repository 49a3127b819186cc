"""The wrappers on a real env (CALVIN, the cheapest to build): chunks equal single steps; instructions survive
gymnasium's shared-memory vector env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import vla_gym  # noqa: F401
from wrappers import ChunkedActions, LanguageAsArray, decode_language


def make_calvin(shared_data):
    return gym.make("VLA/Calvin-v0", protocol="vlm4vla_static", data_dir=str(shared_data / "calvin"))


def test_chunk_equals_single_steps(shared_data):
    chunk = np.zeros((4, 7), dtype=np.float32)
    chunk[:, 0] = 0.5
    chunk[:, 6] = 1.0
    single = make_calvin(shared_data)
    single.reset(options={"episode": 0})
    for row in chunk[:3]:
        obs_single, *_ = single.step(row)
    chunked = ChunkedActions(make_calvin(shared_data), chunk_size=4, execute_steps=3)
    chunked.reset(options={"episode": 0})
    obs_chunk, _, _, _, info = chunked.step(chunk)
    assert info["executed_steps"] == 3
    assert np.array_equal(obs_chunk["image"], obs_single["image"])
    with pytest.raises(ValueError, match="shape"):
        chunked.step(np.zeros((5, 7)))
    bad = chunk.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2"):
        chunked.step(bad)


def _calvin_as_arrays(data: str):  # noqa: ANN202 - a gymnasium env
    return LanguageAsArray(gym.make("VLA/Calvin-v0", protocol="vlm4vla_static", data_dir=data))


def test_language_survives_shared_memory_vector_env(shared_data):
    from functools import partial

    expected = make_calvin(shared_data).reset(options={"episode": 0})[0]["language"]
    assert " " in expected  # a real instruction, with the characters shared memory used to blank
    make = partial(_calvin_as_arrays, str(shared_data / "calvin"))
    # spawned workers: this process has started EGL, which does not survive a fork
    envs = gym.vector.AsyncVectorEnv([make, make], shared_memory=True, context="spawn")
    try:
        obs, _ = envs.reset(options={"episode": 0})
        assert decode_language(obs["language"]) == [expected, expected]
    finally:
        envs.close()


def test_language_too_long_is_refused(shared_data):
    env = LanguageAsArray(make_calvin(shared_data), max_length=8)
    with pytest.raises(ValueError, match="exceeds max_length"):
        env.reset(options={"episode": 0})
