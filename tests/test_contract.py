import numpy as np
import pytest

from tasks.plan import EpisodeKey, select
from tasks.protocol import Protocol, digest_of
from vla_gym.contract import check_reset_options, observation_space, validate_action


def test_validate_action_accepts_real_numbers_and_casts():
    for action in (np.zeros(7), np.zeros(7, dtype=np.float32), np.zeros(7, dtype=np.int64), [0] * 7):
        out = validate_action(action)
        assert out.dtype == np.float32 and out.shape == (7,)


@pytest.mark.parametrize(
    "action, message",
    [
        (np.zeros(6), "shape"),
        (np.zeros((1, 7)), "shape"),
        (np.array([np.nan] + [0] * 6), "non-finite"),
        (np.array([np.inf] + [0] * 6), "non-finite"),
        (np.array(["a"] * 7), "real numbers"),
        (np.zeros(7, dtype=bool), "real numbers"),
        (np.zeros(7, dtype=complex), "real numbers"),
    ],
)
def test_validate_action_refuses_bad_input(action, message):
    with pytest.raises(ValueError, match=message):
        validate_action(action)


def test_reset_options_checked():
    allowed = {"episode": int}
    assert check_reset_options(None, allowed) == {}
    checked = check_reset_options({"episode": np.int64(3)}, allowed)
    assert checked == {"episode": 3} and type(checked["episode"]) is int
    with pytest.raises(KeyError, match="unknown reset option"):
        check_reset_options({"epsiode": 3}, allowed)
    with pytest.raises(ValueError, match="must be int"):
        check_reset_options({"episode": "3"}, allowed)
    with pytest.raises(ValueError, match="must be int"):
        check_reset_options({"episode": True}, allowed)
    with pytest.raises(TypeError, match="must be a dict"):
        check_reset_options(3, allowed)


def test_language_space_holds_instructions():
    space = observation_space(wrist=True)
    assert space["language"].contains("put both the alphabet soup and the tomato sauce in the basket.")
    assert space["image"].shape == (224, 224, 3)


def test_protocol_digest_changes_with_fields():
    a = Protocol(benchmark="x", name="a")
    assert a.digest == digest_of(a.to_dict())
    assert a.replace(name="b").digest != a.digest
    with pytest.raises(KeyError):
        a.replace(nope=1)


def test_plan_select():
    plan = [EpisodeKey(i, i // 3, f"t{i // 3}", i % 3) for i in range(9)]
    assert [k.index for k in select(plan, tasks=[0, 2])] == [0, 1, 2, 6, 7, 8]
    assert [k.index for k in select(plan, tasks=["t1"], episodes_per_task=2)] == [3, 4]
    assert [k.index for k in select(plan, episodes=[8, 1])] == [1, 8]
    with pytest.raises(KeyError):
        select(plan, tasks=[5])
    with pytest.raises(KeyError):
        select(plan, episodes=[99])
