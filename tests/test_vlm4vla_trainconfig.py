"""VLM4VLA checkpoint folders as the paper's training writes them: ``epoch=N-step=M.pt`` files beside one
``<date>-project.json``; the training config is read, used, and contradictions are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_vlm4vla_golden import GOLDEN, compose_policy, golden_agent, recording

from harness.checkpoints import find_checkpoints
from policies.vlm4vla.checkpoint import CheckpointError, load_into, paper_state_dict
from policies.vlm4vla.trainconfig import TrainConfigError


def _instantiate(overrides: list[str]):
    from hydra.utils import instantiate

    return instantiate(compose_policy([*overrides, "policy.device=cpu"]).policy)


def _run_folder(tmp_path: Path, family: str = "kosmos2", config: str = "policy_config_calvin.json",
                edit=None, steps: tuple[int, ...] = (12000,)) -> Path:
    """A training run's folder: epoch=N-step=M.pt (the golden CALVIN state dict) + <date>-project.json."""
    run = tmp_path / "run"
    run.mkdir()
    for i, step in enumerate(steps):
        (run / f"epoch={i + 1}-step={step}.pt").symlink_to(GOLDEN / family / "calvin_state_dict.pt")
    data = json.loads((GOLDEN / family / config).read_text())
    if edit:
        edit(data)
    (run / "2025-06-01-project.json").write_text(json.dumps(data))
    return run


def test_run_folder_loads_by_file_and_by_folder_and_step(tmp_path) -> None:
    run = _run_folder(tmp_path, steps=(8000, 12000))
    base = GOLDEN / "kosmos2" / "base_model_files"
    inputs, out = recording("kosmos2")
    images, language = inputs["images"], [str(s) for s in inputs["instructions"]]
    # a path holding '=' works from the command line quoted as Hydra needs it
    by_file = _instantiate(["policy=kosmos2", f"policy.model_path={base}",
                            f"policy.checkpoint='{run / 'epoch=2-step=12000.pt'}'"])
    assert Path(by_file.train_config.source).name == "2025-06-01-project.json"
    np.testing.assert_allclose(by_file.predict(images, language)[0], out["calvin_raw_arm"], atol=1e-5, rtol=0)
    # or the folder and a step, no '=' on the command line at all; no step = the latest
    by_step = _instantiate(["policy=kosmos2", f"policy.model_path={base}", f"policy.checkpoint={run}",
                            "policy.checkpoint_step=8000"])
    assert by_step.checkpoint.endswith("epoch=1-step=8000.pt")
    latest = _instantiate(["policy=kosmos2", f"policy.model_path={base}", f"policy.checkpoint={run}"])
    assert latest.checkpoint.endswith("epoch=2-step=12000.pt")
    with pytest.raises(Exception, match=r"no checkpoint at step 5 .*\[8000, 12000\]"):  # Hydra wraps it
        _instantiate(["policy=kosmos2", f"policy.model_path={base}", f"policy.checkpoint={run}",
                      "policy.checkpoint_step=5"])
    # the sweep takes the folder as it is: two checkpoints by step, the JSON is not one
    found, skipped = find_checkpoints(run)
    assert [c.step for c in found] == [8000, 12000] and skipped == []
    # the unquoted form fails in Hydra's parser, before any of our code runs
    from hydra.errors import OverrideParseException

    with pytest.raises(OverrideParseException):
        compose_policy(["policy=kosmos2", f"policy.checkpoint={run / 'epoch=2-step=12000.pt'}"])
    # a sweep swaps weights in place, the training config beside each file checked again
    latest.load_weights(str(run / "epoch=1-step=8000.pt"))


def test_the_training_config_sets_the_action_range_and_precision(tmp_path) -> None:
    def edit(cfg: dict) -> None:
        cfg["norm_min"], cfg["norm_max"] = -0.5, 0.8
        cfg["trainer"]["precision"] = "bf16"

    run = _run_folder(tmp_path, edit=edit)
    agent = _instantiate(["policy=kosmos2", f"policy.model_path={GOLDEN / 'kosmos2' / 'base_model_files'}",
                          f"policy.checkpoint={run}"])
    assert agent.action_range == (-0.5, 0.8)
    assert agent.dtype == torch.float32  # CPU: float32 whatever the paper's precision
    from policies.vlm4vla.agent import resolve_dtype

    assert resolve_dtype("auto", torch.device("cuda"), agent.train_config.precision) == torch.bfloat16
    inputs, out = recording("kosmos2")
    agent.configure("calvin", {})
    act = agent.act({"image": inputs["images"], "language": [str(s) for s in inputs["instructions"]]}, [0, 1, 2])
    expected = 0.5 * (out["calvin_raw_arm"].astype(np.float64) + 1) * 1.3 - 0.5
    np.testing.assert_allclose(act[..., :6], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(fwd_pred_next_n=4), r"fwd_pred_next_n is 4 but the checkpoint's head predicts 10"),
        (lambda c: c["act_head"].update(hidden_size=1024), r"act_head.hidden_size is 1024 but .* width 64"),
        (lambda c: c.update(window_size=8), r"window_size is 8"),
        (lambda c: c.update(model="qwen25vl", robovlm_name="RoboQwen25VL"), r"'qwen25vl' model .* policy config is for kosmos2"),
    ],
)
def test_contradicting_training_configs_are_refused(tmp_path, edit, message) -> None:
    run = _run_folder(tmp_path, edit=edit)
    with pytest.raises(Exception, match=message) as info:
        _instantiate(["policy=kosmos2", f"policy.model_path={GOLDEN / 'kosmos2' / 'base_model_files'}",
                      f"policy.checkpoint={run}"])
    assert isinstance(info.value.__cause__ or info.value, TrainConfigError)


def test_a_checkpoint_under_another_familys_policy_is_refused() -> None:
    # a Kosmos-2 run under policy=qwen3vl2b: its training config (beside the file) names the backbone
    with pytest.raises(Exception, match=r"'kosmos' model \(RoboKosMos\).*policy config is for qwen3vl") as info:
        _instantiate(["policy=qwen3vl2b", f"policy.model_path={GOLDEN / 'kosmos2' / 'base_model_files'}",
                      f"policy.checkpoint={GOLDEN / 'kosmos2' / 'calvin_state_dict.pt'}"])
    assert isinstance(info.value.__cause__, TrainConfigError)
    # without the config (train_config=none) the base model's config.json still gives it away
    with pytest.raises(Exception, match=r"is a 'kosmos-2' model .*policy config is for qwen3vl"):
        _instantiate(["policy=qwen3vl2b", f"policy.model_path={GOLDEN / 'kosmos2' / 'base_model_files'}",
                      f"policy.checkpoint={GOLDEN / 'kosmos2' / 'calvin_state_dict.pt'}", "policy.train_config=none"])


def test_deepstack_must_match_the_papers_class(tmp_path) -> None:
    agent = golden_agent("kosmos2", "calvin_state_dict.pt")
    assert agent.deepstack is False  # not a Qwen3-VL
    data = json.loads((GOLDEN / "qwen25vl" / "policy_config_calvin.json").read_text())
    data.update(model="qwen3vl", robovlm_name="RoboQwen3VL")  # the public class, which drops deepstack
    cfg = tmp_path / "2025-01-01-project.json"
    cfg.write_text(json.dumps(data))
    from policies.vlm4vla.trainconfig import read_file

    assert read_file(cfg).deepstack() is False
    data["robovlm_name"] = "RoboQwen3VL_int"
    cfg.write_text(json.dumps(data))
    assert read_file(cfg).deepstack() is True


def test_ambiguous_configs_beside_a_checkpoint_are_refused(tmp_path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "model.pt").symlink_to(GOLDEN / "kosmos2" / "calvin_state_dict.pt")
    for name, n in (("a.json", 1.0), ("b.json", 0.5)):
        data = json.loads((GOLDEN / "kosmos2" / "policy_config_calvin.json").read_text())
        data["norm_max"] = n
        (folder / name).write_text(json.dumps(data))
    base = f"policy.model_path={GOLDEN / 'kosmos2' / 'base_model_files'}"
    with pytest.raises(Exception, match=r"2 training configs beside model.pt disagree .*policy.train_config=FILE"):
        _instantiate(["policy=kosmos2", base, f"policy.checkpoint={folder / 'model.pt'}"])
    chosen = _instantiate(["policy=kosmos2", base, f"policy.checkpoint={folder / 'model.pt'}",
                           f"policy.train_config={folder / 'b.json'}"])
    assert chosen.action_range == (-0.65, 0.5)


def test_missing_backbone_weights_are_listed(tmp_path) -> None:
    state = torch.load(GOLDEN / "kosmos2" / "calvin_state_dict.pt", weights_only=True)
    dropped = [k for k in state if ".layers.1." in k and "text_model" in k]
    for key in dropped:
        state.pop(key)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    shutil.copy(GOLDEN / "kosmos2" / "policy_config_calvin.json", tmp_path / "2025-01-01-project.json")
    with pytest.raises(Exception, match=rf"{len(dropped)} missing \[model\.backbone\.text_model\.model\.layers\.1\.") as info:
        _instantiate(["policy=kosmos2", f"policy.model_path={GOLDEN / 'kosmos2' / 'base_model_files'}",
                      f"policy.checkpoint={path}"])
    assert isinstance(info.value.__cause__, CheckpointError)


def test_moe_experts_saved_by_transformers_4_are_transposed_on_load() -> None:
    from vlm_fixtures import tiny_agent

    agent = tiny_agent("qwen3vlmoe")
    state = read_checkpoint_state(paper_state_dict(agent.model, "qwen3vlmoe"))
    key = next(k for k in state if k.endswith("mlp.experts.gate_up_proj"))
    expected = state[key].clone()
    legacy = {k: (v.transpose(1, 2).contiguous() if k.endswith(("experts.gate_up_proj", "experts.down_proj")) else v)
              for k, v in state.items()}
    assert legacy[key].shape != expected.shape
    with torch.no_grad():
        agent.model.backbone.get_parameter(key.removeprefix("backbone.")).zero_()
    load_into(agent.model, legacy, "qwen3vlmoe")
    torch.testing.assert_close(agent.model.backbone.get_parameter(key.removeprefix("backbone.")), expected)


def read_checkpoint_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k.removeprefix("model."): v for k, v in state.items()}


@pytest.mark.parametrize("family", ["qwen3vl", "qwen3vlmoe", "paligemma2"])
def test_every_family_loads_from_a_weightless_base_folder(family: str, tmp_path) -> None:
    """The user path for families without shared recordings: a base folder with config.json and the tokenizer
    only, a checkpoint in the paper's (legacy) key layout, the training config beside it."""
    from test_vlm4vla_golden import CONFIG_OF
    from vlm_fixtures import INSTRUCTIONS, images, tiny_agent

    source = tiny_agent(family, seed=2)
    imgs = images(2, seed=4)
    expected = source.predict(imgs, INSTRUCTIONS[:2])
    base = tmp_path / "base"
    source.backbone.vlm.config.save_pretrained(base)
    source.backbone.tokenizer.save_pretrained(base)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"state_dict": paper_state_dict(source.model, family, legacy=True)}, run / "epoch=1-step=100.pt")
    data = json.loads((GOLDEN / "kosmos2" / "policy_config_calvin.json").read_text())
    model = {"qwen3vl": "qwen3vl", "qwen3vlmoe": "qwen3vlmoe", "paligemma2": "paligemma"}[family]
    robovlm = {"qwen3vl": "RoboQwen3VL_int", "qwen3vlmoe": "RoboQwen3VLMOE", "paligemma2": "RoboPaligemma"}[family]
    data.update(model=model, robovlm_name=robovlm)
    data["act_head"]["hidden_size"] = 1024
    (run / "2025-02-02-project.json").write_text(json.dumps(data))
    agent = _instantiate([f"policy={CONFIG_OF[family]}", f"policy.model_path={base}", f"policy.checkpoint={run}"])
    assert agent.train_config.model == model
    got = agent.predict(imgs, INSTRUCTIONS[:2])
    np.testing.assert_allclose(got[0], expected[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(got[1], expected[1], atol=1e-6, rtol=0)
