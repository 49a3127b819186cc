"""CALVIN's evaluation chains, generated: equal to the reference chains file, and used when a folder lacks it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.calvin import TASK_NAMES
from vla_gym.calvin import assets, sequences
from vla_gym.calvin.conditions import CONDITION_KEYS, load_chains


@pytest.fixture(scope="module")
def reference(shared_data: Path) -> list[tuple[dict, tuple[str, ...]]]:
    with open(shared_data / "calvin" / assets.SEQUENCES) as f:
        return [(condition, tuple(tasks)) for condition, tasks in json.load(f)]


def test_rules_and_conditions() -> None:
    assert sequences.TASKS == TASK_NAMES  # the draws index into this order
    conditions = sequences.initial_conditions()
    assert len(conditions) == 192
    assert all(tuple(c) == CONDITION_KEYS for c in conditions)
    assert len({tuple(c.values()) for c in conditions}) == 192
    # Lifting from the slider needs the door on the other side; a held block blocks every other task.
    state = {**conditions[0], "red_block": "slider_left", "slider": "right"}
    assert sequences.successors(state, "lift_red_block_slider") == [{**state, "red_block": "grasped", "grasped": 1}]
    assert sequences.successors({**state, "slider": "left"}, "lift_red_block_slider") == []
    held = {**state, "red_block": "grasped", "grasped": 1}
    assert sequences.successors(held, "open_drawer") == []
    # Two ways to stack (two blocks on the table) make the chain ambiguous, hence invalid.
    two_on_table = {**held, "blue_block": "table", "pink_block": "table"}
    assert len(sequences.successors(two_on_table, "stack_block")) == 2
    with pytest.raises(KeyError, match="unknown CALVIN task"):
        sequences.is_valid_chain(conditions[0], ["fly_away"])


@pytest.mark.parametrize("seed", [0, 7, 191])
def test_batched_draws_equal_numpy_choice(seed: int) -> None:
    rng = np.random.RandomState(seed)
    expected = np.array([rng.choice(len(TASK_NAMES), size=5, replace=False) for _ in range(1500)])
    rng = np.random.RandomState(seed)
    got = np.vstack([sequences.draw_tasks(rng, 500) for _ in range(3)])  # the stream carries on across batches
    np.testing.assert_array_equal(got, expected)


def test_state_table_agrees_with_the_rules() -> None:
    table = sequences._table()
    conditions = sequences.initial_conditions()
    rng = np.random.RandomState(3)
    for index in (0, 57, 191):
        picks = sequences.draw_tasks(rng, 4000)
        fast = table.valid(conditions[index], picks)
        slow = [sequences.is_valid_chain(conditions[index], [TASK_NAMES[j] for j in row]) for row in picks]
        assert fast.tolist() == slow
    # Valid chains are rare: a check that always said no would pass the loop above on most rows.
    assert table.valid(conditions[0], np.array([[TASK_NAMES.index(t) for t in (
        "turn_on_led", "open_drawer", "lift_red_block_table", "place_in_drawer", "move_slider_left")]]))[0]


def test_conditions_and_order_match_the_reference(reference) -> None:
    conditions = sequences.initial_conditions()
    slots = sequences.chain_slots(1000)
    assert len(slots) == len(reference) == 1000
    for (index, _), (condition, _) in zip(slots, reference, strict=True):
        assert list(conditions[index].items()) == list(condition.items())  # values and key order


def test_chains_of_some_conditions_match_the_reference(reference) -> None:
    slots = sequences.chain_slots(1000)
    for index in (0, 1, 39, 40, 120, 191):  # conditions 0-39 get six chains, the others five
        positions = [k for k, (i, _) in enumerate(slots) if i == index]
        ranks = [slots[k][1] for k in positions]
        chains = sequences.chains_for_condition(index, len(positions))
        assert [chains[r] for r in ranks] == [reference[k][1] for k in positions]
        assert len(positions) == (6 if index < 40 else 5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="positive int"):
        sequences.chain_slots(0)
    with pytest.raises(ValueError, match="out of range"):
        sequences.chains_for_condition(192, 1)


def _scene_only(shared_data: Path, dest: Path) -> Path:
    """A data folder with every scene file of the reference folder but no chains file (links, no copies)."""
    dest.mkdir()
    for child in (shared_data / "calvin").iterdir():
        if child.name != assets.SEQUENCES:
            (dest / child.name).symlink_to(child)
    return dest


def test_folder_without_chains_uses_the_cached_file(shared_data: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch, reference) -> None:
    monkeypatch.setenv("VLA_GYM_CACHE", str(tmp_path / "cache"))
    folder = _scene_only(shared_data, tmp_path / "calvin")
    cached = assets.cache_dir() / assets.SEQUENCES
    cached.parent.mkdir(parents=True)
    cached.write_bytes((shared_data / "calvin" / assets.SEQUENCES).read_bytes())  # as a past generation left it
    assert assets.resolve_data_dir(folder) == folder
    assert assets.sequences_file(folder) == cached
    assert load_chains(folder) == [(dict(c), t) for c, t in reference]
    cached.write_text("[]")
    assets._verified_sequences.clear()
    with pytest.raises(assets.AssetError, match="SHA-256 mismatch"):
        load_chains(folder)


def test_a_supplied_chains_file_must_be_the_pinned_one(shared_data: Path, tmp_path: Path) -> None:
    folder = _scene_only(shared_data, tmp_path / "calvin")
    (folder / assets.SEQUENCES).write_text("[]")
    with pytest.raises(assets.AssetError, match=r"eval_sequences\.json.*SHA-256"):
        assets.resolve_data_dir(folder)


@pytest.mark.slow
def test_full_generation_is_byte_identical(shared_data: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """All 1000 chains (some 10-25 s): the generated file is the reference file, and the env path caches it."""
    monkeypatch.setenv("VLA_GYM_CACHE", str(tmp_path / "cache"))
    folder = _scene_only(shared_data, tmp_path / "calvin")
    path = assets.sequences_file(folder, progress=False)
    assert path == assets.cache_dir() / assets.SEQUENCES
    assert path.read_bytes() == (shared_data / "calvin" / assets.SEQUENCES).read_bytes()
