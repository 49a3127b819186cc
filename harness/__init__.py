"""The evaluation harness: ``python -m harness.evaluate`` and ``python -m harness.sweep`` (Hydra apps).

spec (config -> protocol, plan, env spec) -> runner (local_runner: env worker processes from workers, agent
batching, chunking) -> records into store (episodes.jsonl) -> metrics -> report, plots, video.
"""
