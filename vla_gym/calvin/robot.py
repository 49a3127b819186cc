"""The Franka Panda (longer fingers) of CALVIN: loading, reset, relative-action control and its observation.

Every constant here is what the original evaluation uses; changing one changes the physics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pybullet as p

ROBOT_URDF = "franka_panda/panda_longer_finger.urdf"
BASE_POSITION = (-0.34, -0.46, 0.24)
BASE_EULER = (0.0, 0.0, 0.0)
ARM_JOINTS = (0, 1, 2, 3, 4, 5, 6)
GRIPPER_JOINTS = (9, 11)
GRIPPER_CAM_LINK = 14
TCP_LINK = 15

# Joint configuration of every evaluation reset and the gripper opening (both fingers together).
EVAL_JOINTS = (-1.21779124, 1.03987629, 2.11978254, -2.34205014, -0.87015899, 1.64119093, 0.55344928)
EVAL_GRIPPER_OPENING = 0.07999963
# The configured "initial" joints: they only enter the IK's null-space rest pose.
CONFIG_JOINTS = (-1.21779206, 1.03987646, 2.11978261, -2.34205014, -0.87015947, 1.64119353, 0.55344866)
GRIPPER_OPEN_POS = 0.04  # per finger
GRIPPER_CLOSED_POS = 0.0

ARM_LOWER = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973)
ARM_UPPER = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973)
MAX_JOINT_FORCE = 200.0
MAX_JOINT_VELOCITY = 2.0
MAX_GRIP_FORCE = 200.0
GRIPPER_VELOCITY = 1.0
MAX_REL_POS = 0.02  # metres per unit action
MAX_REL_ORN = 0.05  # radians per unit action

# The visual-only pedestal drawn under the robot's base.
PEDESTAL_RADIUS = 0.13
PEDESTAL_LENGTH = 0.24
PEDESTAL_POSITION = (-0.39, -0.46, 0.12)


class PandaRobot:
    """The robot of one PyBullet client. ``load`` must come first in the world's load order (body id 0)."""

    def __init__(self, cid: int) -> None:
        self.cid = cid
        self.uid = -1
        self.target_pos = np.zeros(3)
        self.target_orn = np.zeros(3)
        self.gripper_action = 1
        self._ik_limits: tuple[list[float], list[float], list[float], list[float]] | None = None

    def load(self, data_dir: Path) -> None:
        cid = self.cid
        self.uid = p.loadURDF(
            str(data_dir / ROBOT_URDF),
            basePosition=BASE_POSITION,
            baseOrientation=p.getQuaternionFromEuler(BASE_EULER),
            useFixedBase=True,
            physicsClientId=cid,
        )
        # The pedestal's offset sits in the visual frame of a body at the origin, as in the original: the same
        # picture for TinyRenderer, but EGL's shading differs by a pixel otherwise.
        shape = p.createVisualShape(
            p.GEOM_CYLINDER, radius=PEDESTAL_RADIUS, length=PEDESTAL_LENGTH, rgbaColor=[1, 1, 1, 1],
            visualFramePosition=PEDESTAL_POSITION, physicsClientId=cid,
        )
        p.createMultiBody(baseVisualShapeIndex=shape, physicsClientId=cid)
        # The fingers are geared to move symmetrically.
        gear = p.createConstraint(
            self.uid, GRIPPER_JOINTS[0], self.uid, GRIPPER_JOINTS[1], jointType=p.JOINT_GEAR,
            jointAxis=[1, 0, 0], parentFramePosition=[0, 0, 0], childFramePosition=[0, 0, 0],
            physicsClientId=cid,
        )
        p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=cid)
        dofs = p.computeDofCount(self.uid, physicsClientId=cid)
        rest = list(CONFIG_JOINTS) + [GRIPPER_OPEN_POS] * 2
        self._ik_limits = ([-7.0] * dofs, [7.0] * dofs, [7.0] * dofs, rest)
        self.reset(np.asarray(CONFIG_JOINTS), GRIPPER_OPEN_POS)

    def reset(self, joints: np.ndarray, finger_pos: float) -> None:
        """Joints, motor targets and the target pose (set to the TCP pose and never re-synced afterwards)."""
        cid, uid = self.cid, self.uid
        for joint, value in zip(ARM_JOINTS, joints, strict=True):
            p.resetJointState(uid, joint, value, physicsClientId=cid)
            p.setJointMotorControl2(
                bodyIndex=uid, jointIndex=joint, controlMode=p.POSITION_CONTROL, force=MAX_JOINT_FORCE,
                targetPosition=value, maxVelocity=MAX_JOINT_VELOCITY, physicsClientId=cid,
            )
        for joint in GRIPPER_JOINTS:
            p.resetJointState(uid, joint, finger_pos, physicsClientId=cid)
            p.setJointMotorControl2(
                bodyIndex=uid, jointIndex=joint, controlMode=p.POSITION_CONTROL, force=MAX_JOINT_FORCE,
                targetPosition=finger_pos, maxVelocity=GRIPPER_VELOCITY, physicsClientId=cid,
            )
        pos, orn = p.getLinkState(uid, TCP_LINK, physicsClientId=cid)[:2]
        self.target_pos = np.array(pos)
        self.target_orn = np.array(p.getEulerFromQuaternion(orn))
        self.gripper_action = 1

    def apply_action(self, action: np.ndarray) -> None:
        """``action`` float32 (7,): relative TCP motion, gripper exactly +1 (open) or -1 (close)."""
        # calvin_env 1431a46 scales the relative action in place, in the caller's array, so the product is
        # computed in that array's dtype; the published loops send float32. Reproduce that float32 product
        # (a float64 one differs by ~1e-9 m and changes outcomes through contacts), into new arrays: the
        # caller's action is never modified.
        rel_pos = np.asarray(action[:3], dtype=np.float32) * np.float32(MAX_REL_POS)
        rel_orn = np.asarray(action[3:6], dtype=np.float32) * np.float32(MAX_REL_ORN)
        self.target_pos = self.target_pos + rel_pos
        self.target_orn = self.target_orn + rel_orn
        gripper = int(action[6])
        assert self._ik_limits is not None
        lower, upper, ranges, rest = self._ik_limits
        joints = p.calculateInverseKinematics(
            self.uid, TCP_LINK, self.target_pos, p.getQuaternionFromEuler(self.target_orn),
            lowerLimits=lower, upperLimits=upper, jointRanges=ranges, restPoses=rest,
            physicsClientId=self.cid,
        )
        joints = np.clip(np.asarray(joints[: len(ARM_JOINTS)]), ARM_LOWER, ARM_UPPER)
        for joint, value in zip(ARM_JOINTS, joints, strict=True):
            p.setJointMotorControl2(
                bodyIndex=self.uid, jointIndex=joint, controlMode=p.POSITION_CONTROL, force=MAX_JOINT_FORCE,
                targetPosition=value, maxVelocity=MAX_JOINT_VELOCITY, physicsClientId=self.cid,
            )
        self._control_gripper(gripper)

    def _control_gripper(self, gripper: int) -> None:
        if gripper == 1:
            target, force = GRIPPER_OPEN_POS, MAX_GRIP_FORCE / 100
        else:
            target, force = GRIPPER_CLOSED_POS, MAX_GRIP_FORCE
        for joint in GRIPPER_JOINTS:
            p.setJointMotorControl2(
                bodyIndex=self.uid, jointIndex=joint, controlMode=p.POSITION_CONTROL, targetPosition=target,
                force=force, maxVelocity=GRIPPER_VELOCITY, physicsClientId=self.cid,
            )
        self.gripper_action = gripper

    def tcp_pose(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """TCP position and quaternion (xyzw) after the last physics step."""
        pos, orn = p.getLinkState(self.uid, TCP_LINK, physicsClientId=self.cid)[:2]
        return pos, orn

    def observation(self) -> np.ndarray:
        """robot_obs (15): TCP pos, TCP Euler xyz, finger width, 7 arm joints, last gripper command."""
        cid, uid = self.cid, self.uid
        pos, orn = self.tcp_pose()
        width = sum(p.getJointState(uid, j, physicsClientId=cid)[0] for j in GRIPPER_JOINTS)
        arm = [p.getJointState(uid, j, physicsClientId=cid)[0] for j in ARM_JOINTS]
        return np.array([*pos, *p.getEulerFromQuaternion(orn), width, *arm, self.gripper_action])
