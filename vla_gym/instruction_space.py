"""The ``language`` observation space: a :class:`gymnasium.spaces.Text` that survives shared memory.

Gymnasium 1.4's ``AsyncVectorEnv(shared_memory=True)`` (its default, and what
``gym.make_vec(id, vectorization_mode="async")`` builds) reads a ``Text`` entry out of its shared buffer once,
when the vector env is built, and returns that frozen (blank) tuple after every later reset and step: every
instruction arrives as a string of ``\\t`` characters, with no error.

:class:`InstructionText` is a ``Text`` (same ``contains``, ``sample``, batching and equality) with its own
shared-memory functions, registered with Gymnasium's ``create_shared_memory`` / ``write_to_shared_memory`` /
``read_from_shared_memory`` dispatchers (their documented extension point for custom spaces):

- the buffer holds each env's instruction as Unicode code points (int32) plus its length;
- the worker refuses (raises, so the vector env raises) an instruction the space does not contain (too long,
  a character outside the charset) instead of cutting it;
- the batch read is a live view, :class:`SharedInstructions`: the vector env deep-copies it (its default
  ``copy=True``) into a plain ``tuple`` of ``str`` that holds the instructions of that step. With
  ``copy=False`` the view itself is returned and reads the current buffer, like the array entries, which are
  views as well.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any, overload

import numpy as np
from gymnasium import spaces
from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory


class InstructionText(spaces.Text):
    """``Text`` whose values can go through Gymnasium's shared memory intact (see the module docstring)."""


class SharedInstructions(Sequence[str]):
    """The instructions of ``n`` envs, decoded from the shared buffer on every access."""

    def __init__(self, buffer: Any, n: int, max_length: int) -> None:
        self._buffer = buffer
        self._n = n
        self._max_length = max_length

    def _array(self) -> np.ndarray:
        return np.frombuffer(self._buffer.get_obj(), dtype=np.int32).reshape(self._n, self._max_length + 1)

    def _decode(self, row: np.ndarray) -> str:
        length = int(row[0])
        return "".join(chr(int(c)) for c in row[1 : 1 + length])

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        if isinstance(index, slice):
            return self.snapshot()[index]
        return self._decode(self._array()[index])

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[str]:
        return iter(self.snapshot())

    def snapshot(self) -> tuple[str, ...]:
        """The current instructions as a plain tuple."""
        return tuple(self._decode(row) for row in self._array())

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return self.snapshot()

    def __copy__(self) -> tuple[str, ...]:
        return self.snapshot()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SharedInstructions):
            other = other.snapshot()
        return isinstance(other, tuple | list) and self.snapshot() == tuple(other)

    def __hash__(self) -> int:
        return hash(self.snapshot())

    def __repr__(self) -> str:
        return f"SharedInstructions({self.snapshot()!r})"


@create_shared_memory.register(InstructionText)
def _create(space: InstructionText, n: int = 1, ctx: ModuleType = mp) -> Any:
    # per env: [length, code point 0, ..., code point max_length-1]
    return ctx.Array(np.dtype(np.int32).char, n * (space.max_length + 1))


@write_to_shared_memory.register(InstructionText)
def _write(space: InstructionText, index: int, value: str, shared_memory: Any) -> None:
    if not isinstance(value, str) or not space.contains(value):
        # (no repr of the value or the charset: gymnasium's worker error logging %-formats the message)
        if not isinstance(value, str):
            why = f"a {type(value).__name__}, not a str"
        elif len(value) > space.max_length:
            why = f"{len(value)} characters long, the space allows {space.max_length}"
        else:
            why = f"characters outside the charset: {sorted(set(value) - space.character_set)}"
        raise ValueError(f"an instruction is not in the language space: {why}; refusing to cut or alter it")
    width = space.max_length + 1
    row = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)[index * width : (index + 1) * width]
    row[:] = 0
    row[0] = len(value)
    if value:
        row[1 : 1 + len(value)] = np.fromiter((ord(c) for c in value), dtype=np.int32, count=len(value))


@read_from_shared_memory.register(InstructionText)
def _read(space: InstructionText, shared_memory: Any, n: int = 1) -> SharedInstructions:
    return SharedInstructions(shared_memory, n, space.max_length)
