"""The expert agent's plumbing and the shared motion library (no simulator)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from policies.expert import ExpertAgent
from policies.experts import PLANNER_MODULES, planner_class
from policies.experts import motion as m


def _random_rot(rng: np.random.Generator) -> np.ndarray:
    return m.axis_angle_to_mat(rng.normal(size=3))


def test_rotation_round_trips() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        r = _random_rot(rng)
        assert np.allclose(m.quat_wxyz_to_mat(m.mat_to_quat_wxyz(r)), r, atol=1e-9)
        assert np.allclose(m.quat_xyzw_to_mat(m.mat_to_quat_xyzw(r)), r, atol=1e-9)
        assert np.allclose(m.axis_angle_to_mat(m.mat_to_axis_angle(r)), r, atol=1e-9)
        assert np.allclose(m.euler_xyz_to_mat(m.mat_to_euler_xyz(r)), r, atol=1e-9)
    a, b = m.mat_to_quat_wxyz(_random_rot(rng)), m.mat_to_quat_wxyz(_random_rot(rng))
    assert np.allclose(m.quat_wxyz_to_mat(m.quat_mul_wxyz(a, b)), m.quat_wxyz_to_mat(a) @ m.quat_wxyz_to_mat(b))
    assert np.allclose(m.euler_xyz_to_mat((0.1, 0.2, 0.3)), m.rot_z(0.3) @ m.rot_y(0.2) @ m.rot_x(0.1))
    assert np.allclose(m.wrap_angle(np.array([3 * np.pi / 2, -3 * np.pi / 2])), [-np.pi / 2, np.pi / 2])


def test_rotation_error_forms() -> None:
    cur = m.rot_z(0.2)
    tgt = m.rot_z(0.5)
    assert np.allclose(m.rotation_error(cur, tgt, "axis_angle"), [0, 0, 0.3])
    assert np.allclose(m.rotation_error(cur, tgt, "euler_xyz"), [0, 0, 0.3])
    # wrapping: from yaw 3.0 to yaw -3.0 is +0.283 rad, not -6
    assert m.rotation_error(m.rot_z(3.0), m.rot_z(-3.0), "euler_xyz")[2] == pytest.approx(2 * np.pi - 6.0)
    with pytest.raises(ValueError, match="rotation form"):
        m.rotation_error(cur, tgt, "quat")


def test_pose_action_scales_and_clips() -> None:
    scale = m.ActionScale(pos_unit=0.05, rot_unit=0.5, limit=1.0)
    a = m.pose_action(np.zeros(3), np.eye(3), np.array([0.01, -0.02, 0.2]), m.rot_x(0.1), -1.0, scale)
    assert a.shape == (7,)
    assert a[0] == pytest.approx(0.2) and a[1] == pytest.approx(-0.4)
    assert a[2] == 1.0  # 0.2 m / 0.05 = 4 -> clipped to the controller's limit
    assert a[3] == pytest.approx(0.2) and a[6] == -1.0
    capped = m.pose_action(np.zeros(3), np.eye(3), np.array([0.3, 0.4, 0]), None, 1.0, scale,
                           m.Gains(max_pos_step=0.01))
    assert np.allclose(capped[:3], [0.12, 0.16, 0.0])  # 1 cm along the error direction, in 5 cm units
    assert np.all(capped[3:6] == 0)
    unclipped = m.pose_action(np.zeros(3), np.eye(3), np.array([0.5, 0, 0]), None, 1.0,
                              m.ActionScale(pos_unit=1.0, rot_unit=1.0, limit=None))
    assert unclipped[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="rotation"):
        m.ActionScale(pos_unit=1.0, rot_unit=1.0, rotation="rpy")
    with pytest.raises(ValueError, match="pos_unit"):
        m.ActionScale(pos_unit=0.0, rot_unit=1.0)


class _PointRobot:
    """A kinematic end effector that moves exactly by the commanded delta (5 cm / 0.5 rad per unit)."""

    def __init__(self) -> None:
        self.pos = np.zeros(3)
        self.rot = np.eye(3)
        self.gripper = 1.0

    def step(self, action: np.ndarray) -> None:
        self.pos = self.pos + action[:3] * 0.05
        self.rot = m.axis_angle_to_mat(action[3:6] * 0.5) @ self.rot
        self.gripper = action[6]


def _run(machine: m.SkillMachine, robot: _PointRobot, world: object, steps: int) -> list[str]:
    stages = []
    for _ in range(steps):
        robot.step(machine.act(world, robot.pos, robot.rot))
        stages.append(machine.stage)
    return stages


def test_skill_machine_pick_and_place_on_a_point_robot() -> None:
    world = {"cube": np.array([0.3, 0.1, 0.0]), "bin": np.array([-0.2, 0.2, 0.0])}
    machine = m.SkillMachine(m.LIBERO_OSC)
    machine.extend(m.grasp("grasp_cube", lambda c: (c.world["cube"], m.rot_z(0.5))))
    machine.extend(m.lift("lift_cube", 0.1))
    machine.extend(m.place("place_cube", lambda c: (c.world["bin"] + [0, 0, 0.02], None)))
    robot = _PointRobot()
    stages = _run(machine, robot, world, 200)
    assert machine.done and machine.failure is None and machine.stage == "done"
    assert stages.index("lift_cube") < stages.index("place_cube")
    assert np.linalg.norm(robot.pos - (world["bin"] + [0, 0, 0.1])) < 0.03  # retreated above the bin
    assert robot.gripper == m.GRIPPER_OPEN
    assert np.allclose(m.mat_to_axis_angle(robot.rot), [0, 0, 0.5], atol=0.1)


def test_skill_machine_reports_the_failed_skill_and_holds() -> None:
    machine = m.SkillMachine(m.LIBERO_OSC)
    machine.extend(m.move_to("reach", m.const((0.1, 0, 0)), m.GRIPPER_OPEN, max_steps=50))
    machine.extend(m.hold_gripper("grasp_thing", m.GRIPPER_CLOSE, 5, check=lambda c: False))
    machine.extend(m.move_to("never", m.const((0, 0, 1)), m.GRIPPER_CLOSE))
    robot = _PointRobot()
    _run(machine, robot, None, 30)
    assert machine.failure == "grasp_thing" and machine.stage == "grasp_thing"
    assert np.array_equal(machine.act(None, robot.pos, robot.rot), [0, 0, 0, 0, 0, 0, -1])
    machine.replace_remaining(m.move_to("retry", m.const((0, 0, 0)), m.GRIPPER_OPEN))
    assert machine.failure is None and machine.stage == "retry"
    # a target that cannot be reached in the budget fails the skill
    stuck = m.SkillMachine(m.LIBERO_OSC, phases=m.move_to("reach_far", m.const((9, 9, 9)), 1.0, max_steps=3))
    _run(stuck, _PointRobot(), None, 5)
    assert stuck.failure == "reach_far"


def test_turn_press_push_pull_skills_converge() -> None:
    machine = m.SkillMachine(m.LIBERO_OSC)
    machine.extend(m.turn("turn_knob", 0.8))
    machine.extend(m.press("press_button", m.const((0.1, 0.0, 0.0)), depth=0.02))
    machine.extend(m.push("push_block", m.const((0.0, 0.1, 0.0)), m.const((0.0, 0.3, 0.0))))
    machine.extend(m.pull("open_drawer", m.const((0.2, 0.2, 0.0)), (-1, 0, 0), 0.1))
    robot = _PointRobot()
    stages = _run(machine, robot, None, 300)
    assert machine.failure is None and machine.done, stages[-1]
    assert [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s] == [
        "turn_knob", "press_button", "push_block", "open_drawer", "done"
    ]
    assert robot.pos[0] == pytest.approx(0.1, abs=0.02)  # pulled 10 cm back from x=0.2


# ---------------------------------------------------------------------------------------------- the agent
class _ToyPlanner:
    """Moves +x until the privileged 'x' exceeds 1, then reports done; deterministic."""

    def __init__(self, protocol: dict) -> None:
        self.gain = protocol["gain"]
        self.stage = "reach"
        self.failure = None

    def act(self, obs: dict, privileged: dict) -> np.ndarray:
        assert "privileged" not in obs and obs["image"].shape == (4, 4, 3)
        if privileged["x"] > 1:
            self.stage = "done"
        return np.array([self.gain, 0, 0, 0, 0, 0, 1.0 if self.stage != "done" else -1.0])


@pytest.fixture
def toy_benchmark(monkeypatch: pytest.MonkeyPatch) -> str:
    module = types.ModuleType("tests_toy_expert")
    module.Planner = _ToyPlanner
    monkeypatch.setitem(sys.modules, "tests_toy_expert", module)
    monkeypatch.setitem(PLANNER_MODULES, "toy", "tests_toy_expert")
    return "toy"


def _batch(xs: list[float]) -> dict:
    return {
        "image": np.zeros((len(xs), 4, 4, 3), np.uint8),
        "language": ["go"] * len(xs),
        "privileged": [{"x": x} for x in xs],
    }


def test_expert_agent_batches_planners_per_env(toy_benchmark: str, tmp_path) -> None:
    agent = ExpertAgent(record_dir=str(tmp_path))
    assert agent.needs_privileged and agent.chunk_size == agent.execute_steps == 1
    agent.configure(toy_benchmark, {"gain": 0.5})
    agent.reset([0, 3])
    out = agent.act(_batch([0.0, 2.0]), [0, 3])
    assert out.shape == (2, 1, 7) and out.dtype == np.float32
    assert out[0, 0, 6] == 1.0 and out[1, 0, 6] == -1.0
    assert agent.episode_info(0) == {"expert_stage": "reach", "expert_failure": None}
    assert agent.episode_info(3) == {"expert_stage": "done", "expert_failure": None}
    agent.act(_batch([0.5]), [0])
    agent.reset([0])  # a fresh plan for env 0; its finished episode is flushed to disk
    assert agent.episode_info(0)["expert_stage"] == "reach"
    agent.close()
    files = sorted(tmp_path.glob("expert_*.npz"))
    assert len(files) == 2
    first = np.load(files[0])
    assert first["actions"].shape == (2, 7) and first["image"].shape == (2, 4, 4, 3)
    assert str(first["language"]) == "go" and list(first["stages"]) == ["reach", "reach"]


def test_expert_agent_errors_are_clear(toy_benchmark: str) -> None:
    agent = ExpertAgent()
    with pytest.raises(RuntimeError, match="configure"):
        agent.reset([0])
    agent.configure(toy_benchmark, {"gain": 0.1})
    batch = _batch([0.0])
    del batch["privileged"]
    with pytest.raises(KeyError, match="needs_privileged"):
        agent.act(batch, [0])
    with pytest.raises(ValueError, match="entries"):
        agent.act(_batch([0.0, 0.0]), [0])
    with pytest.raises(KeyError, match="no scripted expert"):
        planner_class("atari")
