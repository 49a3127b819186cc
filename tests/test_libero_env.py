"""VLA/LiberoLong-v0 on the real simulator: fidelity to hf-libero, determinism, the contract, bad input.

The default run builds a handful of envs and takes a few dozen rendered steps; longer checks are marked slow.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest

import vla_gym  # noqa: F401 - registers the env ids
from tasks.libero_long import TASK_NAMES
from vla_gym import contract
from vla_gym.libero.assets import import_libero, resolve_assets

REPO = Path(__file__).resolve().parents[1]
FIXTURE_TASK = 3  # the cabinet: a fixture LIBERO's hard reset re-places
PAPER_NOOP = [0, 0, 0, 0, 0, 0, -1]  # the VLM4VLA paper's and OpenVLA's no-op: a list of Python ints
OPENPI_NOOP = [0.0] * 6 + [-1.0]  # openpi's LIBERO_DUMMY_ACTION


def _actions(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.6, 0.6, size=(n, 7)).astype(np.float32)
    actions[:, 6] = np.where(np.arange(n) % 4 < 2, 1.0, -1.0)  # open, open, close, close, ...
    return actions


def _contract_image(raw_image: np.ndarray) -> np.ndarray:
    """The documented transform: rotate 180 degrees, then INTER_AREA resize to 224."""
    return cv2.resize(np.ascontiguousarray(raw_image[::-1, ::-1]), (224, 224), interpolation=cv2.INTER_AREA)


def _sim_state(raw) -> dict[str, np.ndarray]:
    """Computed here from the raw env, independently of the env under test."""
    return {
        "state": np.array(raw.sim.get_state().flatten()),
        "body_pos": np.array(raw.sim.model.body_pos),
        "body_quat": np.array(raw.sim.model.body_quat),
    }


def _assert_same_state(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    for key in ("state", "body_pos", "body_quat"):
        assert np.array_equal(a[key], b[key]), f"simulator {key} differs"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vla_gym_cache")


@pytest.fixture(scope="module")
def env(cache):
    # episode_pool: option-less resets (check_env's) stay in task 0, so they need no rebuild
    e = gym.make("VLA/LiberoLong-v0", cache_dir=cache, proprio=True, native_image=True, episode_pool=[3])
    yield e
    e.close()


@pytest.fixture()
def paper_env(cache):
    """hf-libero's own OffScreenRenderEnv, built the way the VLM4VLA paper's evaluation builds it (fresh for
    each test: LIBERO's resets depend on how many came before in the same instance)."""
    libero = import_libero(resolve_assets(), cache_dir=cache)
    from libero.libero.envs import OffScreenRenderEnv

    bddl = os.path.join(libero.get_libero_path("bddl_files"), "libero_10", f"{TASK_NAMES[FIXTURE_TASK]}.bddl")
    raw = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=256, camera_widths=256)
    yield raw
    raw.close()


@pytest.fixture(scope="module")
def paper_init_states(cache):
    torch = pytest.importorskip("torch")
    libero = import_libero(resolve_assets(), cache_dir=cache)
    path = os.path.join(
        libero.get_libero_path("init_states"), "libero_10", f"{TASK_NAMES[FIXTURE_TASK]}.pruned_init"
    )
    return torch.load(path, weights_only=False)


def _paper_episode_start(raw, init_state: np.ndarray, seed: int = 0):
    raw.seed(seed)  # the published loops seed once, right after building: this is their first trial of the task
    raw.reset()
    return raw.set_init_state(init_state)


def _libero_action(action: np.ndarray) -> list[float]:
    """A contract action as the published loops hand it to LIBERO: ``action.tolist()``, gripper -1 = open."""
    native = np.asarray(action, dtype=np.float64).copy()
    native[6] = -native[6]
    return native.tolist()


def test_fidelity_to_hf_libero(env, paper_env, paper_init_states):
    """The default protocol against hf-libero's OffScreenRenderEnv driven by the VLM4VLA paper's loop: a no-op
    before each of the first five policy steps; state, images and proprio bitwise equal at every step."""
    init_state = 7
    obs, info = env.reset(seed=0, options={"task": FIXTURE_TASK, "init_state": init_state})
    raw_obs = _paper_episode_start(paper_env, paper_init_states[init_state])
    assert info["episode"] == FIXTURE_TASK * 50 + init_state and info["success"] is False
    timestep = 0
    for action in _actions(7):  # the paper's loop, unrolled: policy steps 1..7
        if timestep < 10:
            raw_obs, _, _, _ = paper_env.step(PAPER_NOOP)
            timestep += 1
        # what the policy sees before its step
        _assert_same_state(env.unwrapped.sim_snapshot(), _sim_state(paper_env))
        assert np.array_equal(obs["image"], _contract_image(raw_obs["agentview_image"]))
        assert np.array_equal(obs["wrist_image"], _contract_image(raw_obs["robot0_eye_in_hand_image"]))
        assert np.array_equal(obs["image_native"], raw_obs["agentview_image"][::-1, ::-1])
        proprio = obs["proprio"]
        assert proprio.dtype == np.float32 and proprio.shape == (8,)
        assert np.array_equal(proprio[:3], raw_obs["robot0_eef_pos"].astype(np.float32))
        assert np.array_equal(proprio[6:], raw_obs["robot0_gripper_qpos"].astype(np.float32))

        obs, reward, terminated, truncated, info = env.step(action)
        raw_obs, raw_reward, done, _ = paper_env.step(_libero_action(action))
        timestep += 1
        assert terminated == bool(done) == info["success"] and reward == raw_reward and not truncated
    assert timestep == 12 and info["policy_steps"] == 7  # 5 no-ops, 7 policy steps
    assert env.unwrapped.privileged_state()["success"] == bool(paper_env.check_success())

    # hf-libero's own second trial, even re-seeded, re-places the cabinet elsewhere: its resets depend on the
    # resets before them. Ours do not (the next test, and test_episode_is_the_same_whatever_ran_before).
    pinned = _sim_state(paper_env)["body_pos"]
    paper_env.seed(0)
    paper_env.reset()
    assert not np.array_equal(pinned, _sim_state(paper_env)["body_pos"])


@pytest.mark.parametrize(("protocol", "seed", "noop"), [("openvla", 0, PAPER_NOOP), ("openpi", 7, OPENPI_NOOP)])
def test_openvla_and_openpi_loops_are_reproduced(cache, paper_env, paper_init_states, protocol, seed, noop):
    """10 no-ops first (the wait branch ends in `continue`), then the policy; each with its own env.seed."""
    init_state, policy_steps = 2, 3
    env = gym.make(
        "VLA/LiberoLong-v0", protocol=protocol, protocol_overrides={"max_steps": policy_steps}, cache_dir=cache
    )
    actions = _actions(policy_steps, seed=4)
    raw_obs = _paper_episode_start(paper_env, paper_init_states[init_state], seed)
    try:
        obs, _ = env.reset(options={"task": FIXTURE_TASK, "init_state": init_state})
        t = 0
        while t < policy_steps + 10:  # the loop of both examples
            if t < 10:
                raw_obs, _, _, _ = paper_env.step(noop)
                t += 1
                continue
            _assert_same_state(env.unwrapped.sim_snapshot(), _sim_state(paper_env))
            assert np.array_equal(obs["image"], _contract_image(raw_obs["agentview_image"]))
            action = actions[t - 10]
            obs, _, terminated, truncated, info = env.step(action)
            raw_obs, _, done, _ = paper_env.step(_libero_action(action))
            assert terminated == bool(done)
            t += 1
        assert truncated and info["episode_metrics"]["settle_steps"] == 10
        _assert_same_state(env.unwrapped.sim_snapshot(), _sim_state(paper_env))
    finally:
        env.close()


def test_paper_interleaved_loop_is_reproduced(cache, paper_env, paper_init_states):
    """The default protocol replays the paper's loop (no `continue` after the wait branch) to its end."""
    max_steps, wait, init_state = 3, 4, 1
    env = gym.make(
        "VLA/LiberoLong-v0",
        protocol_overrides={"max_steps": max_steps, "settle_steps": wait},
        cache_dir=cache,
    )
    actions = _actions(10, seed=1)
    try:
        obs, _ = env.reset(options={"task": FIXTURE_TASK, "init_state": init_state})
        ours, done = [], False  # what the policy sees before each of its steps
        while not done:
            ours.append(obs["image"])
            obs, _, terminated, truncated, info = env.step(actions[len(ours) - 1])
            done = terminated or truncated
        metrics = info["episode_metrics"]
        with pytest.raises(contract.EpisodeOverError):
            env.step(actions[0])
        final = env.unwrapped.sim_snapshot()
    finally:
        env.close()

    raw_obs = _paper_episode_start(paper_env, paper_init_states[init_state])
    timestep, theirs = 0, []
    while timestep < max_steps + wait:  # the paper's loop, verbatim in structure
        if timestep < wait:
            raw_obs, _, _, _ = paper_env.step(PAPER_NOOP)
            timestep += 1
        theirs.append(_contract_image(raw_obs["agentview_image"]))  # the policy's input
        raw_obs, _, done, _ = paper_env.step(_libero_action(actions[len(theirs) - 1]))
        if done:
            break
        timestep += 1
    assert truncated and not terminated
    assert metrics["policy_steps"] == len(theirs) == 5 and metrics["settle_steps"] == 2
    _assert_same_state(final, _sim_state(paper_env))
    # the policy sees the observation after each interleaved no-op, as the paper's policy did
    for mine, paper in zip(ours, theirs, strict=True):
        assert np.array_equal(mine, paper)


class _StepSpy:
    """Records every argument hf-libero's env.step receives (a copy), then steps."""

    def __init__(self, raw) -> None:
        self.raw, self.real, self.calls = raw, raw.step, []

    def __enter__(self) -> _StepSpy:
        def spy(action):
            self.calls.append(copy.deepcopy(action))
            return self.real(action)

        self.raw.step = spy
        return self

    def __exit__(self, *exc) -> None:
        del self.raw.step  # back to the class's method


def _is_list_of(value, kind: type) -> bool:
    return type(value) is list and len(value) == 7 and all(type(v) is kind for v in value)


def test_the_simulator_receives_what_the_paper_loop_passes(env):
    """vlm4vla: a list of Python ints for each no-op, `action.tolist()` (Python floats at float64 precision,
    nothing rounded to float32) for each policy step, in the paper's order: no-op before policy steps 1..5."""
    env.reset(options={"episode": 3})  # builds task 0's simulator
    # float64 values that float32 cannot hold, as the paper's un-normalised actions are
    precise = np.array([0.1, -0.2, 0.3, 1e-3 + 1e-12, -0.05, 0.7 + 1e-9, 1.0], dtype=np.float64)
    assert not np.array_equal(precise.astype(np.float32).astype(np.float64), precise)
    with _StepSpy(env.unwrapped._raw) as spy:
        env.reset(options={"episode": 3})
        for _ in range(6):
            env.step(precise)
    kinds = ["noop" if c == PAPER_NOOP and _is_list_of(c, int) else "policy" for c in spy.calls]
    assert kinds == ["noop", "policy"] * 5 + ["policy"]
    for call in spy.calls[1::2]:
        assert _is_list_of(call, float) and call == _libero_action(precise)  # exact: the gripper flip is exact
    assert spy.calls[1][6] == -1.0  # contract +1 (open) reaches LIBERO as -1 (open)


def test_native_actions_and_float32_precision_reach_the_simulator_as_declared(cache):
    """openpi: float no-ops, 10 first; action_dtype="float32" rounds to float32; native actions pass as given."""
    native_env = gym.make(
        "VLA/LiberoLong-v0", protocol="openpi", protocol_overrides={"action_dtype": "float32"},
        action_mode="native", render_cameras=False, cache_dir=cache,
    )  # fmt: skip
    precise = np.array([0.1, -0.2, 0.3, 0.0, 0.0, 1e-9, 1.0], dtype=np.float64)
    try:
        native_env.reset(options={"episode": 3})
        with _StepSpy(native_env.unwrapped._raw) as spy:
            native_env.reset(options={"episode": 3})
            native_env.step(precise)
            native_env.step([0, 0, 0, 0, 0, 0, -1])  # ints are accepted; robosuite gets floats
    finally:
        native_env.close()
    assert spy.calls[:10] == [OPENPI_NOOP] * 10 and all(_is_list_of(c, float) for c in spy.calls[:10])
    assert _is_list_of(spy.calls[10], float)
    assert spy.calls[10] == precise.astype(np.float32).astype(np.float64).tolist()  # rounded, gripper as given
    assert spy.calls[10] != precise.tolist() and spy.calls[10][6] == 1.0
    assert _is_list_of(spy.calls[11], float) and spy.calls[11] == [0.0] * 6 + [-1.0]


def _run_episode(env, episode: int, actions: np.ndarray) -> list:
    obs, info = env.reset(options={"episode": episode})
    record = [obs["image"], obs["wrist_image"], env.unwrapped.sim_snapshot(), info["task"]]
    for action in actions:
        obs, *_ = env.step(action)
        record += [obs["image"], obs["wrist_image"], obs["proprio"], env.unwrapped.sim_snapshot()]
    return record


def _assert_same_record(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, dict):
            _assert_same_state(x, y)
        elif isinstance(x, np.ndarray):
            assert np.array_equal(x, y)
        else:
            assert x == y


def test_episode_is_the_same_whatever_ran_before(env):
    actions = _actions(3, seed=2)
    first = _run_episode(env, 3, actions)
    assert first[3] == TASK_NAMES[0]
    for episode in (0, 1, 2):
        np.random.seed(1000 + episode)  # whatever else the process does with numpy's global RNG
        _run_episode(env, episode, _actions(1, seed=episode))
    state = np.random.get_state()
    again = _run_episode(env, 3, actions)
    _assert_same_record(first, again)
    # the env restores the caller's global RNG
    assert np.array_equal(np.random.get_state()[1], state[1])


def test_contract_observation_info_and_gripper(env):
    space = env.observation_space
    obs, info = env.reset(options={"episode": 3})
    assert space.contains(obs)
    assert obs["language"] == "put both the alphabet soup and the tomato sauce in the basket"
    for key in contract.INFO_KEYS:
        assert key in info
    assert (info["task_index"], info["episode"], info["init_state"]) == (0, 3, 3)
    unwrapped = env.unwrapped
    assert unwrapped.protocol.name == "vlm4vla" and unwrapped.protocol_digest == unwrapped.protocol.digest
    assert len(unwrapped.episode_plan) == 500
    assert ("in", "alphabet_soup_1", "basket_1_contain_region") in unwrapped.goal_predicates
    privileged = unwrapped.privileged_state()
    assert {"objects", "joints", "robot", "goal", "success"} <= set(privileged)
    assert privileged["objects"]["alphabet_soup_1"]["pos"].shape == (3,)

    width = obs["proprio"][6] - obs["proprio"][7]
    close = np.array([0, 0, 0, 0, 0, 0, -1], dtype=np.float32)  # contract: -1 closes
    # the paper's loop re-opens the gripper with a no-op after each of policy steps 1..4: close from step 5 on
    for _ in range(4 + 5):
        obs, *_ = env.step(close)
    assert obs["proprio"][6] - obs["proprio"][7] < width - 0.01
    obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1]))  # ints are accepted
    assert space.contains(obs)


@pytest.mark.parametrize(
    "action, message",
    [
        (np.zeros(6), "shape"),
        (np.zeros((1, 7)), "shape"),
        (np.array([np.nan, 0, 0, 0, 0, 0, 0]), "non-finite"),
        (np.array([0, 0, 0, np.inf, 0, 0, 0]), "non-finite"),
        (np.array(["a"] * 7), "real numbers"),
        (np.zeros(7, dtype=bool), "real numbers"),
    ],
)
def test_bad_actions_are_refused(env, action, message):
    if env.unwrapped._last_raw_obs is None:
        env.reset(options={"episode": 3})
    before = env.unwrapped.sim_snapshot()
    with pytest.raises(ValueError, match=message):
        env.step(action)
    _assert_same_state(before, env.unwrapped.sim_snapshot())  # nothing was executed


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"episode": 500}, ValueError, "not in the vlm4vla plan"),
        ({"episode": -1}, ValueError, "not in the vlm4vla plan"),
        ({"episode": "3"}, ValueError, "must be int"),
        ({"episode": 1.0}, ValueError, "must be int"),
        ({"task": 10, "init_state": 0}, ValueError, "out of range"),
        ({"task": "NO_SUCH_TASK", "init_state": 0}, KeyError, "unknown LIBERO-Long task"),
        ({"task": 0, "init_state": 50}, ValueError, "does not exist"),
        ({"init_state": 2}, ValueError, "needs options\\['task'\\]"),
        ({"episode": 2, "task": 0}, ValueError, "not both"),
        ({"epsiode": 2}, KeyError, "unknown reset option"),
        ([("episode", 2)], TypeError, "must be a dict"),
    ],
)
def test_bad_reset_options_are_refused(env, options, error, message):
    with pytest.raises(error, match=message):
        env.reset(options=options)


def test_bad_constructor_arguments(cache):
    with pytest.raises(ValueError, match="action_mode"):
        gym.make("VLA/LiberoLong-v0", action_mode="absolute")
    with pytest.raises(KeyError, match="unknown libero_long protocol"):
        gym.make("VLA/LiberoLong-v0", protocol="libero90")
    with pytest.raises(ValueError, match="episode_pool entry 900"):
        gym.make("VLA/LiberoLong-v0", episode_pool=[900])
    env = gym.make("VLA/LiberoLong-v0", cache_dir=cache).unwrapped
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(7))


def test_native_action_mode_passes_the_gripper_through(cache):
    native_env = gym.make("VLA/LiberoLong-v0", action_mode="native", cache_dir=cache, proprio=True)
    try:
        obs, _ = native_env.reset(options={"episode": 3})
        width = obs["proprio"][6] - obs["proprio"][7]
        close = np.array([0, 0, 0, 0, 0, 0, 1.0])  # LIBERO's own sign: +1 closes
        for _ in range(4 + 5):  # the first four are undone by the paper loop's interleaved no-ops
            obs, *_ = native_env.step(close)
        assert obs["proprio"][6] - obs["proprio"][7] < width - 0.01
    finally:
        native_env.close()


# gymnasium's advisory warnings for the unbounded action space (the contract does not clip) and robosuite's
# logger are expected; anything else check_env says is a failure.
_EXPECTED_WARNINGS = ("infinity", "symmetric and normalized", "'warn' method is deprecated")


def _check_env_cleanly(env) -> None:
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught if not any(s in str(w.message) for s in _EXPECTED_WARNINGS)]
    assert not unexpected


def test_check_env_passes(env):
    _check_env_cleanly(env)  # made by gym.make, so the spec exists; option-less resets pick episode 3


@pytest.mark.slow
def test_check_env_passes_with_seed_chosen_episodes_across_tasks(cache):
    env = gym.make("VLA/LiberoLong-v0", cache_dir=cache, render_mode="rgb_array")
    try:
        _check_env_cleanly(env)
    finally:
        env.close()


@pytest.mark.slow
def test_episode_is_the_same_in_a_fresh_process_and_after_other_tasks(cache, env):
    """Episode 3 after an episode of another task (an env rebuild) equals episode 3 in a new process."""
    env.reset(options={"episode": 260})
    np.random.seed(7)
    obs, _ = env.reset(options={"episode": 3})
    here = env.unwrapped.sim_snapshot()
    code = textwrap.dedent(
        f"""
        import sys, numpy as np, gymnasium as gym, vla_gym
        env = gym.make("VLA/LiberoLong-v0", cache_dir={str(cache)!r})
        obs, _ = env.reset(options={{"episode": 3}})
        snap = env.unwrapped.sim_snapshot()
        np.savez(sys.argv[1], image=obs["image"], wrist=obs["wrist_image"], **snap)
        env.close()
        """
    )
    out = cache / "fresh_episode3.npz"
    result = subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    fresh = np.load(out)
    assert np.array_equal(fresh["image"], obs["image"]) and np.array_equal(fresh["wrist"], obs["wrist_image"])
    _assert_same_state({k: fresh[k] for k in ("state", "body_pos", "body_quat")}, here)


@pytest.mark.slow
def test_truncates_at_525_policy_steps(cache):
    env = gym.make("VLA/LiberoLong-v0", cache_dir=cache, protocol="vlm4vla_fast")
    try:
        env.reset(options={"episode": 0})
        hold = np.zeros(7, dtype=np.float32)
        hold[6] = 1.0
        for step in range(1, 526):
            _, _, terminated, truncated, info = env.step(hold)
            assert not terminated
            assert truncated == (step == 525)
        assert info["episode_metrics"] == {
            "policy_steps": 525, "settle_steps": 5, "success": False, "action_out_of_range_steps": 0,
        }
        with pytest.raises(contract.EpisodeOverError):
            env.step(hold)
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", range(10))
def test_every_task_builds_and_steps(cache, task):
    env = gym.make("VLA/LiberoLong-v0", cache_dir=cache)
    try:
        obs, info = env.reset(options={"task": task, "init_state": 49})
        assert info["task"] == TASK_NAMES[task] and info["episode"] == task * 50 + 49
        obs, *_ = env.step(np.zeros(7))
        assert env.observation_space.contains(obs)
        assert len(env.unwrapped.goal_predicates) >= 1
    finally:
        env.close()
