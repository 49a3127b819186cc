"""Each benchmark owns its scoring (tasks.scoring): the harness asks it by name."""

from __future__ import annotations

import pytest

from harness.metrics import episode_score, summarize
from harness.records import EpisodeRecord
from tasks.registry import get_benchmark


def rec(episode: int, success: bool, status: str = "ok", **metrics: object) -> EpisodeRecord:
    return EpisodeRecord(
        episode=episode, task_index=0, task="chain", within_task=episode, status=status, success=success,
        episode_metrics=dict(metrics),
    )  # fmt: skip


def test_calvin_chain_length_comes_from_the_protocol() -> None:
    calvin = get_benchmark("calvin")
    records = [rec(0, True, chain_length=3, chain_tasks=["a", "b", "c"]), rec(1, False, chain_length=1)]
    short = calvin.protocol(chain_length=3)
    m = summarize(records, "calvin", protocol=short)
    assert sorted(m["calvin"]["success_at"]) == ["1", "2", "3"]
    assert m["headline"] == {"name": "avg_len", "value": pytest.approx(2.0)}
    assert sorted(summarize(records, "calvin")["calvin"]["success_at"]) == ["1", "2", "3", "4", "5"]
    with pytest.raises(ValueError, match="outside 0..3"):
        summarize([rec(0, True, chain_length=4)], "calvin", protocol=short)
    assert [t.header[1:4] for t in calvin.report_sections(m)[0].blocks[:1]] == [("1/3", "2/3", "3/3")]
    assert episode_score(records[0], "calvin") == 3.0 and not calvin.binary_scores
    assert calvin.format_headline(2.0) == "2.000"


def test_headline_formats_and_scores_are_the_benchmarks() -> None:
    bridge = get_benchmark("simpler_bridge")
    assert bridge.format_headline(0.25) == "25.0%" and bridge.binary_scores
    ok = rec(0, True, grasped_any=True)
    assert episode_score(ok, "simpler_bridge") == 1.0
    assert episode_score(rec(1, True, status="error"), "libero_long") == 0.0


@pytest.mark.parametrize("name", ["calvin", "libero_long", "simpler_bridge"])
def test_episode_metrics_schema_is_checked(name: str) -> None:
    bench = get_benchmark(name)
    assert bench.EPISODE_METRICS, f"{name} declares no episode_metrics schema"
    assert bench.check_episode_metrics({}) == [f"missing {k!r}" for k in bench.EPISODE_METRICS]
    key = next(iter(bench.EPISODE_METRICS))
    problems = bench.check_episode_metrics({key: object()})
    assert any(key in p and "expected" in p for p in problems)


def test_env_episode_metrics_keys_match_the_schema() -> None:
    """The envs write the keys their benchmark reads (checked on the source, without a simulator)."""
    import inspect

    import vla_gym.bridge.env
    import vla_gym.calvin.env
    import vla_gym.libero.env

    for name, module in (
        ("calvin", vla_gym.calvin.env), ("simpler_bridge", vla_gym.bridge.env), ("libero_long", vla_gym.libero.env)
    ):  # fmt: skip
        source = inspect.getsource(module)
        block = source[source.index('info["episode_metrics"] = {') :].split("}", 1)[0]
        for key in get_benchmark(name).EPISODE_METRICS:
            assert f'"{key}"' in block, f"{name}: the env does not write episode_metrics[{key!r}]"
