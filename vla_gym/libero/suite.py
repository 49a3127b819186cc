"""The LIBERO suites' files shipped inside hf-libero: BDDL problem files and init states (no simulator needed)."""

from __future__ import annotations

import functools
import pickle
import zipfile
from pathlib import Path

import numpy as np

from tasks.libero_long import INIT_STATES_PER_FILE, SUITE
from tasks.libero_tasks import SUITE_TASKS
from vla_gym.libero.assets import libero_package_root


def bddl_path(task_name: str, suite: str = SUITE) -> Path:
    path = libero_package_root() / "bddl_files" / suite / f"{task_name}.bddl"
    if not path.is_file():
        raise FileNotFoundError(
            f"BDDL file {path} is missing: reinstall hf-libero (pip install --no-deps hf-libero==0.1.4)"
        )
    return path


def init_states_path(task_name: str, suite: str = SUITE) -> Path:
    return libero_package_root() / "init_files" / suite / f"{task_name}.pruned_init"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the plain numpy array inside a ``.pruned_init`` archive and refuses anything else, so the
    file is read without torch and without running arbitrary code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): __import__("codecs").encode,
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"init-state file refers to {module}.{name}; only numpy arrays are allowed"
            ) from None


@functools.lru_cache(maxsize=32)
def load_init_states(task_name: str, suite: str = SUITE) -> np.ndarray:
    """The task's init states: float64 (50, state_dim) flattened MuJoCo states (time, qpos, qvel).

    The file is a torch zip archive whose pickle holds one numpy array.
    """
    if task_name not in SUITE_TASKS.get(suite, ()):
        raise KeyError(f"unknown {suite} task {task_name!r}")
    path = init_states_path(task_name, suite)
    if not path.is_file():
        raise FileNotFoundError(
            f"init-state file {path} is missing: reinstall hf-libero (pip install --no-deps hf-libero==0.1.4)"
        )
    with zipfile.ZipFile(path) as archive:
        member = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
        if member is None:
            raise ValueError(f"{path} is not a torch archive holding data.pkl")
        states = _NumpyOnlyUnpickler(archive.open(member)).load()
    if not isinstance(states, np.ndarray) or states.ndim != 2 or len(states) != INIT_STATES_PER_FILE:
        raise ValueError(
            f"{path} holds {type(states).__name__} {getattr(states, 'shape', '')}, expected (50, n)"
        )
    states.setflags(write=False)
    return states
