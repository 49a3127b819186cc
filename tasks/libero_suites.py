"""LIBERO's other suites: Spatial, Object, Goal (10 tasks each) and LIBERO-90. Imports no simulator.

Each is a :class:`tasks.libero_long.LiberoSuiteBenchmark`: LIBERO-Long's env, protocols, fidelity and scoring
with the suite's task list (hf-libero's default order, ``tasks.libero_tasks``), 50 init states per task and
the suite's step limit. The limits (spatial 220, object 280, goal 300, libero_90 400; libero_10 520) are those
of OpenVLA's ``experiments/robot/libero/run_libero_eval.py`` and openpi's ``examples/libero/main.py``, which
share one table (see ``tasks.libero_tasks``).

Protocols per suite (see ``tasks.libero_long`` for the loops):

- ``openvla`` / ``openpi``: those published loops exactly, as they run on every suite (10 no-ops first,
  then at most the suite's limit of policy steps).
- ``vlm4vla`` (default): the VLM4VLA paper's interleaved loop (its evaluator's counter runs to
  ``max_steps + 10``, five no-ops taken out of it) with the suite's limit. The paper evaluated LIBERO-10 only;
  its loop takes the limit as a parameter, so on the other suites this is the paper's loop at the limit the
  published loops use there. It is not a reproduction of a published number on these suites.
- ``vlm4vla_fast``: ``vlm4vla`` rendered at 224.
"""

from __future__ import annotations

from tasks.libero_long import BENCHMARK as LONG
from tasks.libero_long import LiberoSuiteBenchmark

SPATIAL = LiberoSuiteBenchmark("libero_spatial", "VLA/LiberoSpatial-v0", "libero_spatial", "LIBERO-Spatial", "LiberoSpatialEnv")
OBJECT = LiberoSuiteBenchmark("libero_object", "VLA/LiberoObject-v0", "libero_object", "LIBERO-Object", "LiberoObjectEnv")
GOAL = LiberoSuiteBenchmark("libero_goal", "VLA/LiberoGoal-v0", "libero_goal", "LIBERO-Goal", "LiberoGoalEnv")
LIBERO_90 = LiberoSuiteBenchmark("libero_90", "VLA/Libero90-v0", "libero_90", "LIBERO-90", "Libero90Env")

# every LIBERO suite's benchmark name, for what serves all of them alike (e.g. the scripted expert)
LIBERO_BENCHMARKS: tuple[str, ...] = tuple(b.name for b in (SPATIAL, OBJECT, GOAL, LONG, LIBERO_90))
