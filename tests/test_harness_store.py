"""The result store: append + fsync, resume, crash-truncated lines, refusing another set-up."""

from __future__ import annotations

import json

import pytest

from harness.records import EpisodeRecord
from harness.store import EPISODES_FILE, ResultStore, StoreMismatchError, read_records


def info(digest: str = "aaaa", **changes: object) -> dict:
    base = {
        "benchmark": "toy", "env_id": "VLA/Toy-v0", "env_kwargs": {}, "protocol": {"name": "default"},
        "protocol_digest": digest, "policy": {"_target_": "x.Agent", "w": 1.0}, "checkpoint": None, "seed": 0,
    }  # fmt: skip
    base.update(changes)
    return base


def record(k: int, success: bool = True, status: str = "ok") -> EpisodeRecord:
    return EpisodeRecord(episode=k, task_index=0, task="t", within_task=k, status=status, success=success)


def test_append_and_resume(tmp_path) -> None:
    with ResultStore(tmp_path, info()) as store:
        store.append(record(0))
        store.append(record(2, success=False))
        store.append(record(3, success=False, status="error"))
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["protocol_digest"] == "aaaa" and "numpy" in run["versions"]
    with ResultStore(tmp_path, info()) as store:
        assert store.done() == {0, 2, 3}
        assert store.done(retry_errors=True) == {0, 2}
        assert [r.episode for r in store.select([3, 0, 1, 2])] == [3, 0, 2]
        store.append(record(3, success=True))  # an error episode re-run: the latest record wins
    assert [(r.episode, r.success, r.status) for r in read_records(tmp_path)] == [
        (0, True, "ok"), (2, False, "ok"), (3, True, "ok"),
    ]  # fmt: skip


def test_line_cut_short_by_a_crash_is_dropped_and_repaired(tmp_path) -> None:
    with ResultStore(tmp_path, info()) as store:
        store.append(record(0))
        store.append(record(1))
    path = tmp_path / EPISODES_FILE
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:25])  # a kill -9 in the middle of a write
    with ResultStore(tmp_path, info()) as store:
        assert store.done() == {0, 1}
        store.append(record(2))
    lines = path.read_text().splitlines()
    assert [json.loads(line)["episode"] for line in lines] == [0, 1, 2]


def test_corrupt_complete_line_is_an_error(tmp_path) -> None:
    ResultStore(tmp_path, info()).close()
    (tmp_path / EPISODES_FILE).write_text('{"episode": 0, oops}\n')
    with pytest.raises(ValueError, match="corrupt line"):
        ResultStore(tmp_path, info())


def test_other_protocol_digest_is_refused_with_a_clear_message(tmp_path) -> None:
    ResultStore(tmp_path, info("aaaa")).close()
    with pytest.raises(StoreMismatchError, match=r"protocol digest aaaa .* digest bbbb .*another output_dir"):
        ResultStore(tmp_path, info("bbbb"))


@pytest.mark.parametrize(
    "change", [{"policy": {"_target_": "x.Agent", "w": 2.0}}, {"seed": 1}, {"checkpoint": "/c/step=1.pt"}]
)
def test_other_setup_is_refused(tmp_path, change: dict) -> None:
    ResultStore(tmp_path, info()).close()
    key = next(iter(change))
    with pytest.raises(StoreMismatchError, match=key):
        ResultStore(tmp_path, info(**change))
