"""Full-protocol wall time per benchmark on an NVIDIA GPU machine, with a real-size Qwen3-VL-2B VLM4VLA policy.

    MUJOCO_GL=egl .venv/bin/python bench/gpu_protocol_time.py [--benchmarks libero_long calvin simpler_bridge]
        [--num-envs 16] [--episodes 32] [--calvin-data /data/calvin] [--scheduler pipeline]
    .venv/bin/python bench/gpu_protocol_time.py --dry-run     # no GPU: builds the model on the meta device

The policy is ``VLM4VLAAgent(family=qwen3vl)`` with its real input pipeline (Qwen's tokenizer, 224 -> 448
upscaling, chat prompt), head and output mapping, on a Qwen3-VL-2B built from its configuration by hand
(the sizes of Qwen/Qwen3-VL-2B-Instruct; nothing is downloaded) with random weights, in bfloat16 on the GPU.
Envs render with EGL. For each benchmark, a sample of the protocol's episodes (spread over its tasks) runs
through the local runner with ``--num-envs`` workers; printed: episodes per hour, env steps per second, agent
calls and mean batch, and the projected time of the whole protocol in two ways:

- at the measured episodes per hour (random weights fail, so LIBERO and Bridge episodes run to their step
  limit: pessimistic; CALVIN chains stop at their first failed subtask: optimistic for CALVIN);
- worst case: every episode (every CALVIN subtask) to its step limit, at the measured steps per second.

Without an NVIDIA GPU (or without torch built for CUDA) it stops with a clear message (exit code 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

ENV_IDS = {"libero_long": "VLA/LiberoLong-v0", "calvin": "VLA/Calvin-v0", "simpler_bridge": "VLA/SimplerBridge-v0"}


def qwen3_vl_2b_config() -> Any:
    """Qwen3-VL-2B-Instruct's architecture: a 28-layer Qwen3 text model (hidden 2048, GQA 16/8 heads of 128)
    and a 24-layer ViT (hidden 1024, patch 16, DeepStack taps at layers 5/11/17) merging 2x2 patches."""
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28,
            num_attention_heads=16, num_key_value_heads=8, head_dim=128, hidden_act="silu",
            max_position_embeddings=262144, rms_norm_eps=1e-6, attention_bias=False, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                             "mrope_interleaved": True},
        ),
        vision_config=dict(
            depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048,
            patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304,
            deepstack_visual_indexes=[5, 11, 17], hidden_act="gelu_pytorch_tanh", in_channels=3,
        ),
        image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653,
        tie_word_embeddings=True,
    )  # fmt: skip


def count_parameters() -> int:
    """Parameters of the model built from :func:`qwen3_vl_2b_config` on the meta device (no memory used)."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration(qwen3_vl_2b_config())
    return sum(p.numel() for p in model.parameters())


class Qwen3VL2BAgentFactory:
    """Builds the VLM4VLA agent around a random-weight Qwen3-VL-2B, directly on the GPU."""

    def __call__(self) -> Any:
        import torch

        import policies.vlm4vla.tiny as tiny
        from policies.vlm4vla.agent import VLM4VLAAgent

        real_config = tiny.tiny_config
        tiny.tiny_config = lambda family: qwen3_vl_2b_config()  # the 'tiny' path, at full size
        try:
            with torch.device("cuda"):  # initialise the weights on the GPU, not in host memory
                return VLM4VLAAgent("qwen3vl", model_path="tiny", device="cuda", dtype="bfloat16")
        finally:
            tiny.tiny_config = real_config


def require_gpu() -> str:
    try:
        import torch
    except ImportError:
        sys.exit("gpu_protocol_time: torch is not installed; this measurement needs torch with CUDA")
    if not torch.cuda.is_available():
        built = torch.version.cuda or "none (a CPU-only build)"
        print(f"gpu_protocol_time: no NVIDIA GPU visible to torch (torch {torch.__version__}, CUDA {built}). "
              "Run it on a machine with an NVIDIA GPU and a CUDA build of torch; --dry-run checks the model "
              "configuration without one.", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    return torch.cuda.get_device_name(0)


def sample(plan: list[Any], n: int) -> list[Any]:
    """``n`` episodes spread evenly over the plan (so over its tasks)."""
    if n >= len(plan):
        return list(plan)
    return [plan[round(i * len(plan) / n)] for i in range(n)]


def worst_case_steps(benchmark: str, protocol: Any, plan: list[Any]) -> int:
    cfg = protocol.to_dict()
    if benchmark == "calvin":
        return len(plan) * cfg["chain_length"] * cfg["max_steps_per_subtask"]
    if benchmark == "simpler_bridge":
        return sum(cfg["max_steps_eggplant"] if "eggplant" in k.task else cfg["max_steps"] for k in plan)
    return len(plan) * cfg["max_steps"]


def measure(benchmark: str, args: argparse.Namespace) -> dict[str, Any]:
    from harness.local_runner import LocalRunner
    from harness.runner import AgentSource
    from harness.workers import EnvSpec
    from tasks import registry

    bench = registry.get_benchmark(benchmark)
    protocol = bench.protocol(args.protocol)
    plan = bench.episode_plan(protocol)
    kwargs: dict[str, Any] = {}
    if benchmark == "calvin" and args.calvin_data:
        kwargs["data_dir"] = args.calvin_data
    spec = EnvSpec(ENV_IDS[benchmark], {**kwargs, "protocol": protocol}, protocol_digest=protocol.digest)
    episodes = sample(plan, args.episodes)
    source = AgentSource(Qwen3VL2BAgentFactory())
    with LocalRunner(spec, benchmark, protocol.to_dict(), num_envs=args.num_envs, scheduler=args.scheduler) as runner:
        warm_start = time.perf_counter()
        for slot in runner._slots:  # every worker builds its env while the warm-up episode runs
            runner._worker(slot)
        list(runner.run(plan[:1], source))  # the agent built and its kernels warm
        warm = time.perf_counter() - warm_start
        start = time.perf_counter()
        records = [r.record for r in runner.run(episodes, source)]
        elapsed = time.perf_counter() - start
    errors = [r for r in records if r.status != "ok"]
    steps = sum(r.steps for r in records)
    calls = sum(r.agent_calls for r in records)
    per_hour = len(records) / elapsed * 3600
    steps_per_s = steps / elapsed
    return {
        "benchmark": benchmark, "episodes": len(records), "errors": len(errors), "warmup_s": warm,
        "elapsed_s": elapsed, "episodes_per_hour": per_hour, "steps_per_s": steps_per_s,
        "agent_calls": calls, "plan": len(plan),
        "projected_h": len(plan) / per_hour, "worst_case_h": worst_case_steps(benchmark, protocol, plan) / steps_per_s / 3600,
        "first_error": errors[0].error if errors else None,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmarks", nargs="+", default=list(ENV_IDS), choices=list(ENV_IDS))
    parser.add_argument("--num-envs", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--episodes", type=int, default=None, help="sample size per benchmark (default 2 x envs)")
    parser.add_argument("--protocol", default="vlm4vla")
    parser.add_argument("--calvin-data", default=os.environ.get("VLA_GYM_CALVIN_DATA"))
    parser.add_argument("--scheduler", default="pipeline", choices=["pipeline", "lockstep"])
    parser.add_argument("--dry-run", action="store_true", help="check the model configuration; no GPU needed")
    args = parser.parse_args()
    args.episodes = args.episodes or 2 * args.num_envs
    params = count_parameters()
    print(f"Qwen3-VL-2B from config: {params / 1e9:.2f} B parameters (the released model has 2.13 B)")
    if args.dry_run:
        return
    device = require_gpu()
    print(f"GPU: {device}; {args.num_envs} env workers ({os.cpu_count()} CPUs), MUJOCO_GL={os.environ['MUJOCO_GL']}, "
          f"scheduler {args.scheduler}, {args.episodes} episodes per benchmark", flush=True)  # fmt: skip
    rows = []
    for benchmark in args.benchmarks:
        row = measure(benchmark, args)
        rows.append(row)
        print(f"{benchmark}: {row['episodes']} episodes in {row['elapsed_s']:.0f} s (warm-up {row['warmup_s']:.0f} s, "
              f"{row['errors']} errors), {row['episodes_per_hour']:.0f} episodes/h, {row['steps_per_s']:.1f} steps/s, "
              f"{row['agent_calls']} agent calls; protocol of {row['plan']} episodes: {60 * row['projected_h']:.1f} min "
              f"at this rate, {60 * row['worst_case_h']:.1f} min worst case", flush=True)  # fmt: skip
        if row["first_error"]:
            print(f"  first error: {row['first_error'][:500]}")
    total = sum(r["projected_h"] for r in rows)
    worst = sum(r["worst_case_h"] for r in rows)
    print(f"all: {60 * total:.1f} min projected, {60 * worst:.1f} min worst case")


if __name__ == "__main__":
    main()
