"""SimplerEnv-Bridge pieces that need no simulator: protocol, plan, layouts, rotations, Vulkan, assets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tasks.registry import get_benchmark
from tasks.simpler_bridge import TASK_NAMES
from vla_gym.bridge import assets as bridge_assets
from vla_gym.bridge import vulkan
from vla_gym.bridge.layouts import EGGPLANT_MANISKILL3, LAYOUTS
from vla_gym.bridge.rotation import euler_xyz_to_axis_angle, quat_to_euler_xyz


def test_plan_maps_k_to_task_and_episode_id() -> None:
    bench = get_benchmark("simpler_bridge")
    plan = bench.episode_plan(bench.protocol())
    assert len(plan) == 96
    for k in (0, 23, 24, 47, 71, 95):
        assert plan[k].index == k
        assert plan[k].task == TASK_NAMES[k // 24]
        assert plan[k].within_task == k % 24
    assert bench.task_names == ("spoon_on_towel", "carrot_on_plate", "stack_cube", "eggplant_in_basket")


def test_protocols_default_and_fast() -> None:
    bench = get_benchmark("simpler_bridge")
    default, fast = bench.protocol(), bench.protocol("fast")
    assert (default.render_width, default.render_height, default.image_size) == (640, 480, 224)
    assert (fast.render_width, fast.render_height) == (224, 224)
    assert default.digest != fast.digest
    fx, fy, cx, cy = fast.intrinsics()
    assert fx == pytest.approx(623.588 * 224 / 640) and fy == pytest.approx(623.588 * 224 / 480)
    assert cx == pytest.approx(319.501 * 224 / 640) and cy == pytest.approx(239.545 * 224 / 480)
    assert default.max_steps_for("carrot_on_plate") == 60
    assert default.max_steps_for("eggplant_in_basket") == 120
    assert default.success == "final_step"
    with pytest.raises(KeyError, match="unknown simpler_bridge protocol"):
        bench.protocol("nope")
    with pytest.raises(KeyError, match="unknown simpler_bridge task"):
        default.max_steps_for("sponge")
    with pytest.raises(ValueError, match="resize_interpolation"):
        bench.protocol(resize_interpolation="nearest-ish")


def test_layouts_match_simpler_env() -> None:
    for task in TASK_NAMES:
        assert LAYOUTS[task].count == 24, task
    # SimplerEnv: spoon/carrot 12 position pairs x 2 orientations, stack 24 x 1, eggplant 8 x 3
    assert (len(LAYOUTS["spoon_on_towel"].xyz), len(LAYOUTS["spoon_on_towel"].quats)) == (12, 2)
    assert (len(LAYOUTS["carrot_on_plate"].xyz), len(LAYOUTS["carrot_on_plate"].quats)) == (12, 2)
    assert (len(LAYOUTS["stack_cube"].xyz), len(LAYOUTS["stack_cube"].quats)) == (24, 1)
    assert (len(LAYOUTS["eggplant_in_basket"].xyz), len(LAYOUTS["eggplant_in_basket"].quats)) == (8, 3)
    carrot = LAYOUTS["carrot_on_plate"]
    # episode 0: carrot on the (-x, -y) corner, plate on (-x, +y), carrot yawed by pi
    src, tgt = carrot.pose(0)[carrot.source], carrot.pose(0)[carrot.target]
    np.testing.assert_allclose(src[0][:2], [-0.235, -0.075])
    np.testing.assert_allclose(tgt[0][:2], [-0.235, 0.075])
    np.testing.assert_allclose(Rotation.from_quat(src[1], scalar_first=True).as_euler("xyz")[2], np.pi)
    assert carrot.indices(5) == (2, 1)
    stack = LAYOUTS["stack_cube"]
    np.testing.assert_allclose(stack.pose(12)[stack.source][0][:2], [-0.26, -0.1])  # second, larger square
    # eggplant: SimplerEnv's euler2quat(0, 0, yaw) for yaw 0, +45, -45 deg (the mesh's own frame, no tilt);
    # the target plane untilted; positions on SimplerEnv's 2 x 4 grid around (-0.105, 0.206)
    egg = LAYOUTS["eggplant_in_basket"]
    for i, yaw in enumerate((0.0, 45.0, -45.0)):
        np.testing.assert_array_equal(egg.quats[i, 0], [np.cos(np.radians(yaw) / 2), 0, 0, np.sin(np.radians(yaw) / 2)])
        np.testing.assert_array_equal(egg.quats[i, 1], [1, 0, 0, 0])
    np.testing.assert_allclose(egg.xyz[:, 0, :2].min(axis=0), [-0.115, 0.191])
    np.testing.assert_allclose(egg.xyz[:, 0, :2].max(axis=0), [-0.095, 0.221])
    np.testing.assert_allclose(egg.xyz[:, 1, :2], np.tile([-0.125, 0.025], (8, 1)))
    # ManiSkill3's own eggplant layouts: same positions, its 8 tilted orientations (64 ids)
    assert EGGPLANT_MANISKILL3.count == 64
    np.testing.assert_array_equal(EGGPLANT_MANISKILL3.xyz[:, 0, :2], egg.xyz[:, 0, :2])
    assert egg.indices(4) == (1, 1)
    with pytest.raises(ValueError, match="episode_id"):
        egg.indices(-1)


def test_euler_to_axis_angle_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    for rpy in [np.zeros(3), np.array([0.0, 0.0, 0.1]), *rng.uniform(-np.pi, np.pi, (50, 3))]:
        expected = Rotation.from_euler("xyz", rpy).as_rotvec()  # lowercase: static axes, as SimplerEnv's sxyz
        np.testing.assert_allclose(euler_xyz_to_axis_angle(rpy), expected, atol=1e-9)
    np.testing.assert_allclose(euler_xyz_to_axis_angle([1e-9, 0, 0]), [1e-9, 0, 0], atol=1e-15)
    for rpy in rng.uniform(-1.2, 1.2, (20, 3)):
        quat = Rotation.from_euler("xyz", rpy).as_quat(scalar_first=True)
        np.testing.assert_allclose(quat_to_euler_xyz(quat), rpy, atol=1e-9)


def test_vulkan_pins_lavapipe_when_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    icd_dir = tmp_path / "icd.d"
    icd_dir.mkdir()
    (icd_dir / "intel_icd.json").write_text("{}")
    (icd_dir / "lvp_icd.json").write_text("{}")
    for var in vulkan.ICD_ENV_VARS:
        monkeypatch.setenv(var, "")  # records the current value, so the variables are restored afterwards
        monkeypatch.delenv(var)
    monkeypatch.setattr(vulkan, "installed_icds", lambda: sorted(icd_dir.glob("*.json")))
    monkeypatch.setattr(vulkan, "has_vulkan_loader", lambda: True)
    assert "lavapipe" in vulkan.ensure_vulkan_driver()
    for var in vulkan.ICD_ENV_VARS:
        assert os.environ[var] == str(icd_dir / "lvp_icd.json")


def test_vulkan_missing_driver_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in vulkan.ICD_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(vulkan, "installed_icds", lambda: [Path("/usr/share/vulkan/icd.d/intel_icd.json")])
    monkeypatch.setattr(vulkan, "has_vulkan_loader", lambda: True)
    with pytest.raises(vulkan.VulkanDriverError, match="mesa-vulkan-drivers"):
        vulkan.ensure_vulkan_driver()
    monkeypatch.setattr(vulkan, "has_vulkan_loader", lambda: False)
    with pytest.raises(vulkan.VulkanDriverError, match="libvulkan"):
        vulkan.ensure_vulkan_driver()
    monkeypatch.setattr(vulkan, "has_vulkan_loader", lambda: True)
    monkeypatch.setenv("VK_ICD_FILENAMES", "/nonexistent/lvp_icd.json")
    with pytest.raises(vulkan.VulkanDriverError, match="do not exist"):
        vulkan.ensure_vulkan_driver()
    err = vulkan.explain_render_failure(RuntimeError('Failed to find a supported physical device "cpu"'))
    assert err is not None and "apt-get" in str(err)
    assert vulkan.explain_render_failure(RuntimeError("unrelated")) is None


def test_assets_resolve_flags_standins_and_digest(shared_data: Path) -> None:
    tree = shared_data / "bridge"
    resolved = bridge_assets.resolve_assets(tree, download=False)
    assert resolved.data_root == (tree / "data").resolve()
    assert resolved.source == "assets_dir"
    assert resolved.are_standins
    assert set(resolved.standin_files) == {
        "stages/bridge_table_1_v1.glb",
        "stages/bridge_table_1_v2.glb",
        "custom/models/eggplant/textured.obj",
    }
    assert len(resolved.digest) == 16 and int(resolved.digest, 16) >= 0
    # the same tree named through its data folder gives the same digest
    assert bridge_assets.resolve_assets(tree / "data", download=False).digest == resolved.digest


def test_asset_digest_changes_with_content(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for rel in (
        "robots/widowx/wx250s.urdf",
        "tasks/bridge_v2_real2sim_dataset/custom/info_bridge_custom_v0.json",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("a")
    (root / "tasks/bridge_v2_real2sim_dataset/stages").mkdir()
    first = bridge_assets.asset_digest(root)
    assert bridge_assets.missing_parts(root) == []
    assert bridge_assets.standin_files(root) == ()
    (root / "robots/widowx/wx250s.urdf").write_text("b")
    assert bridge_assets.asset_digest(root) != first


def test_assets_missing_folder_errors_with_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="download_asset"):
        bridge_assets.resolve_assets(tmp_path / "nope")
    (tmp_path / "data" / "robots").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="widowx250s"):
        bridge_assets.resolve_assets(tmp_path)
    monkeypatch.setenv("MS_ASSET_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="bridge_v2_real2sim"):
        bridge_assets.resolve_assets(None, download=False)
