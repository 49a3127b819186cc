"""The CALVIN evaluation chains, generated: 1000 (initial condition, five tasks) pairs.

CALVIN's evaluation does not ship its chains; it draws them at run time from a symbolic model of the scene
(``get_sequences(1000)`` in calvin_models' ``evaluation/multistep_sequences.py``). This module is an
independent implementation of the same procedure, with the same random streams, so it yields the very same
chains in the same order:

1. The initial conditions are every combination of LED, lightbulb, slider, drawer and block places (blocks on
   the table or in one of the two slider compartments, one or two of them on the table, at most one per
   compartment), nothing grasped: 192 conditions, enumerated with the last key varying fastest.
2. The chains are split evenly over the conditions (the first ``num % 192`` get one more).
3. For condition ``i``, a legacy ``numpy.random.RandomState(i)`` draws five distinct tasks at a time (out of the
   34, in CALVIN's task order) until it has drawn as many valid chains as that condition needs. A chain is
   valid when each task has exactly one applicable variant in the symbolic state reached so far and no two
   tasks share a category (e.g. not two block rotations, not two light switches).
4. The (condition, chain) pairs, in condition order, are shuffled with ``RandomState(0)``.

Only numpy's legacy ``RandomState`` is used: its streams are frozen across numpy versions.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

CHAIN_LENGTH = 5
NUM_CHAINS = 1000
BLOCKS = ("red", "blue", "pink")
SLIDER_SPOTS = ("slider_right", "slider_left")

# Every symbolic variable and its possible initial values, in the order the chains file writes them (the order
# also fixes the enumeration of initial conditions, so it matters).
INITIAL_VALUES: dict[str, tuple[Any, ...]] = {
    "led": (0, 1),
    "lightbulb": (0, 1),
    "slider": ("right", "left"),
    "drawer": ("closed", "open"),
    "red_block": ("table", "slider_right", "slider_left"),
    "blue_block": ("table", "slider_right", "slider_left"),
    "pink_block": ("table", "slider_right", "slider_left"),
    "grasped": (0,),
}

State = dict[str, Any]
# A task variant: (precondition: variable -> allowed values, effect: variable -> new value).
Variant = tuple[dict[str, tuple[Any, ...]], dict[str, Any]]


def _block(color: str) -> str:
    return f"{color}_block"


def _free(**required: Any) -> dict[str, tuple[Any, ...]]:
    """A precondition (each value a single allowed one) that also needs an empty gripper."""
    return {**{k: (v,) for k, v in required.items()}, "grasped": (0,)}


def _holding(color: str, **required: Any) -> dict[str, tuple[Any, ...]]:
    return {_block(color): ("grasped",), **{k: (v,) for k, v in required.items()}, "grasped": (1,)}


def _build_rules() -> tuple[dict[str, tuple[Variant, ...]], dict[str, int]]:
    """The 34 tasks in CALVIN's order (the draws index into it) with their variants and categories."""
    rules: dict[str, tuple[Variant, ...]] = {}
    category: dict[str, int] = {}

    def add(name: str, cat: int, *variants: Variant) -> None:
        rules[name] = variants
        category[name] = cat

    # Rotating or pushing a block keeps it on the table; all twelve share one category.
    for verb in ("rotate", "push"):
        for color in BLOCKS:
            for side in ("right", "left"):
                add(f"{verb}_{color}_block_{side}", 1, (_free(**{_block(color): "table"}), {}))
    add("move_slider_left", 2, (_free(slider="right"), {"slider": "left"}))
    add("move_slider_right", 2, (_free(slider="left"), {"slider": "right"}))
    add("open_drawer", 3, (_free(drawer="closed"), {"drawer": "open"}))
    add("close_drawer", 3, (_free(drawer="open"), {"drawer": "closed"}))
    for color in BLOCKS:
        lifted = {_block(color): "grasped", "grasped": 1}
        add(f"lift_{color}_block_table", 4, (_free(**{_block(color): "table"}), lifted))
        # A slider compartment is reachable only while the door covers the other one.
        add(f"lift_{color}_block_slider", 5,
            (_free(**{_block(color): "slider_left", "slider": "right"}), lifted),
            (_free(**{_block(color): "slider_right", "slider": "left"}), lifted))
        add(f"lift_{color}_block_drawer", 6, (_free(**{_block(color): "drawer", "drawer": "open"}), lifted))
    add("place_in_slider", 7, *(
        (_holding(color, slider=side), {_block(color): f"slider_{side}", "grasped": 0})
        for color in BLOCKS for side in ("right", "left")
    ))
    add("place_in_drawer", 7, *(
        (_holding(color, drawer="open"), {_block(color): "drawer", "grasped": 0}) for color in BLOCKS
    ))
    pairs = [(top, bottom) for top in BLOCKS for bottom in BLOCKS if bottom != top]
    add("stack_block", 10, *(
        (_holding(top, **{_block(bottom): "table"}),
         {_block(top): "stacked_top", _block(bottom): "stacked_bottom", "grasped": 0})
        for top, bottom in pairs
    ))
    add("unstack_block", 11, *(
        (_free(**{_block(top): "stacked_top", _block(bottom): "stacked_bottom"}),
         {_block(top): "table", _block(bottom): "table"})
        for top, bottom in pairs
    ))
    add("turn_on_lightbulb", 8, (_free(lightbulb=0), {"lightbulb": 1}))
    add("turn_off_lightbulb", 8, (_free(lightbulb=1), {"lightbulb": 0}))
    add("turn_on_led", 8, (_free(led=0), {"led": 1}))
    add("turn_off_led", 8, (_free(led=1), {"led": 0}))
    # Pushing a block off the table into the drawer needs the other two blocks out of the way, in the slider.
    add("push_into_drawer", 9, *(
        ({_block(color): ("table",), **{_block(o): SLIDER_SPOTS for o in BLOCKS if o != color},
          "drawer": ("open",), "grasped": (0,)}, {_block(color): "drawer"})
        for color in BLOCKS
    ))
    return rules, category


RULES, CATEGORY = _build_rules()
TASKS: tuple[str, ...] = tuple(RULES)


def initial_conditions() -> list[State]:
    """The 192 initial conditions, in enumeration order."""
    conditions = []
    for values in itertools.product(*INITIAL_VALUES.values()):
        condition = dict(zip(INITIAL_VALUES, values, strict=True))
        places = [condition[_block(c)] for c in BLOCKS]
        if places.count("table") in (1, 2) and all(places.count(s) < 2 for s in SLIDER_SPOTS):
            conditions.append(condition)
    return conditions


def successors(state: Mapping[str, Any], task: str) -> list[State]:
    """The states ``task`` can lead to from ``state``: one per applicable variant."""
    if task not in RULES:
        raise KeyError(f"unknown CALVIN task {task!r}; known tasks: {list(TASKS)}")
    return [
        {**state, **effect}
        for pre, effect in RULES[task]
        if all(state[k] in allowed for k, allowed in pre.items())
    ]


def is_valid_chain(condition: Mapping[str, Any], tasks: tuple[str, ...] | list[str]) -> bool:
    """Whether every task applies in exactly one way in turn and no two tasks share a category."""
    unknown = [t for t in tasks if t not in RULES]
    if unknown:
        raise KeyError(f"unknown CALVIN task(s) {unknown}; known tasks: {list(TASKS)}")
    if len({CATEGORY[t] for t in tasks}) != len(tasks):
        return False
    state: Mapping[str, Any] = condition
    for task in tasks:
        nexts = successors(state, task)
        if len(nexts) != 1:
            return False
        state = nexts[0]
    return True


# ------------------------------------------------------------------------------------------ fast drawing
# Drawing one chain at a time (``rng.choice`` then ``is_valid_chain``) needs about 7 million draws for 1000
# chains. The same draws are made in batches below: identical random streams, checked with a state table.


def draw_tasks(rng: np.random.RandomState, n: int) -> np.ndarray:
    """Task indices (n x 5) equal to ``n`` successive ``rng.choice(34, 5, replace=False)`` calls.

    Such a call shuffles ``arange(34)`` (Fisher-Yates from the last slot down: slot ``i`` swapped with slot
    ``j``, drawn in ``[0, i]`` by masked rejection) and keeps the first five slots. ``randint`` with
    per-element upper bounds draws those ``j`` from the stream the same way, so one call makes all the swaps
    of ``n`` shuffles; undoing the swaps, last first, tells where each kept slot's element started.
    """
    size = len(TASKS)
    bounds = np.tile(np.arange(size, 1, -1, dtype=np.int64), n)  # exclusive bounds for slots 33, 32, ..., 1
    swaps = rng.randint(0, bounds, dtype=np.int64).reshape(n, size - 1)
    swap_with = np.ascontiguousarray(swaps.T[::-1], dtype=np.int8)  # row i - 1: the partner of slot i
    slot = np.repeat(np.arange(CHAIN_LENGTH, dtype=np.int8)[:, None], n, axis=1)
    for i in range(1, CHAIN_LENGTH):
        j = swap_with[i - 1]
        slot = np.where(slot == i, j, np.where(slot == j, np.int8(i), slot))
    # From slot 5 on a tracked slot is always below i (it reaches i only at step i), so only "== j" can hit.
    hit = np.empty(slot.shape, dtype=bool)
    for i in range(CHAIN_LENGTH, size):
        np.equal(slot, swap_with[i - 1], out=hit)
        np.copyto(slot, np.int8(i), where=hit)
    return slot.T.astype(np.int64)


class _StateTable:
    """Every symbolic state reachable from the initial conditions, numbered, with each task's unique successor."""

    def __init__(self) -> None:
        keys = tuple(INITIAL_VALUES)
        index: dict[tuple[Any, ...], int] = {}
        states: list[State] = []

        def number(state: State) -> int:
            key = tuple(state[k] for k in keys)
            if key not in index:
                index[key] = len(states)
                states.append(state)
            return index[key]

        for condition in initial_conditions():
            number(condition)
        edges: list[list[int]] = []
        k = 0
        while k < len(states):  # states grows while it is walked: a breadth-first closure
            row = []
            for task in TASKS:
                nexts = successors(states[k], task)
                row.append(number(nexts[0]) if len(nexts) == 1 else -1)
            edges.append(row)
            k += 1
        self.keys = keys
        self.index = index
        self.sink = len(states)  # stands for "some task did not apply in exactly one way"
        table = np.array(edges, dtype=np.int64)
        table[table < 0] = self.sink
        self.next = np.vstack([table, np.full((1, len(TASKS)), self.sink, dtype=np.int64)])
        self.category = np.array([CATEGORY[t] for t in TASKS], dtype=np.int64)

    def valid(self, condition: Mapping[str, Any], picks: np.ndarray) -> np.ndarray:
        """The rows of ``picks`` (task indices) that are valid chains from ``condition``."""
        cats = np.sort(self.category[picks], axis=1)
        distinct = (np.diff(cats, axis=1) != 0).all(axis=1)
        state = np.full(len(picks), self.index[tuple(condition[k] for k in self.keys)], dtype=np.int64)
        for col in range(picks.shape[1]):
            state = self.next[state, picks[:, col]]
        return distinct & (state != self.sink)


_TABLE: _StateTable | None = None
_BATCH = 16384  # draws per batch: about 5 MB of swaps; a condition needs some 37000 draws on average


def _table() -> _StateTable:
    global _TABLE
    if _TABLE is None:
        _TABLE = _StateTable()
    return _TABLE


def chains_for_condition(index: int, count: int) -> list[tuple[str, ...]]:
    """The first ``count`` valid chains drawn for initial condition ``index`` (seeded with ``index``)."""
    conditions = initial_conditions()
    if not 0 <= index < len(conditions):
        raise ValueError(f"condition index {index} out of range: there are {len(conditions)} initial conditions")
    condition = conditions[index]
    rng = np.random.RandomState(index)
    table = _table()
    chains: list[tuple[str, ...]] = []
    while len(chains) < count:
        picks = draw_tasks(rng, _BATCH)
        for row in picks[table.valid(condition, picks)][: count - len(chains)]:
            chains.append(tuple(TASKS[j] for j in row))
    return chains


def chain_slots(num: int = NUM_CHAINS) -> list[tuple[int, int]]:
    """For each of the ``num`` chains, in final order: (initial condition index, rank among its chains)."""
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ValueError(f"num must be a positive int (CALVIN's evaluation uses {NUM_CHAINS}), got {num!r}")
    n_cond = len(initial_conditions())
    # Even split, remainder to the first conditions (as numpy.array_split sizes its parts).
    base, extra = divmod(num, n_cond)
    slots = [(i, r) for i in range(n_cond) for r in range(base + (i < extra))]
    order = list(range(len(slots)))
    np.random.RandomState(0).shuffle(order)  # the shuffle of a Python list: same swaps as of the pairs
    return [slots[k] for k in order]


def generate_eval_sequences(num: int = NUM_CHAINS, progress: bool = False) -> list[tuple[State, tuple[str, ...]]]:
    """CALVIN's ``num`` evaluation chains in CALVIN's order: (initial condition, five task names).

    About seven million draws for the 1000 chains: some 10-25 s on one CPU core.
    """
    from tqdm import tqdm

    slots = chain_slots(num)
    conditions = initial_conditions()
    counts: dict[int, int] = {}
    for cond, _ in slots:
        counts[cond] = counts.get(cond, 0) + 1
    todo = tqdm(sorted(counts.items()), desc="CALVIN chains", unit="condition", disable=not progress)
    drawn = {cond: chains_for_condition(cond, n) for cond, n in todo}
    return [(dict(conditions[cond]), drawn[cond][rank]) for cond, rank in slots]


def dumps(chains: list[tuple[State, tuple[str, ...]]]) -> str:
    """The chains as CALVIN's ``eval_sequences.json`` text (4-space indented JSON, no final newline)."""
    return json.dumps([[condition, list(tasks)] for condition, tasks in chains], indent=4)
