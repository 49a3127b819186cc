"""VLM4VLA policy latency per backbone (tiny random configs) at batch 1, 4 and 8, and the per-sample
speed-up of batching, measured side by side in one run.

    python bench/bench_policies.py [--families qwen3vl kosmos2] [--repeats 5] [--threads 1]
    python bench/bench_policies.py --full qwen3vl --model-path DIR_OR_HUB_ID --batches 1 8 32   # GPU, bf16
    python bench/bench_policies.py --libero-pixels   # LIBERO: native-256 crop vs 224 crop, pixel difference

``--full`` builds the family's real architecture from ``--model-path``'s config.json with random weights
(no weight download needed when only the config is present).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.vlm4vla import FAMILIES, VLM4VLAAgent  # noqa: E402

INSTRUCTION = "put both the alphabet soup and the tomato sauce in the basket"


def time_agent(agent: VLM4VLAAgent, batch: int, repeats: int) -> float:
    """Median seconds of one act() call (image preprocessing + forward + mapping) at ``batch``."""
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8), "language": [INSTRUCTION] * batch}
    ids = list(range(batch))
    agent.act(obs, ids)  # warm-up
    if agent.device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        agent.act(obs, ids)
        if agent.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def full_agent(family: str, model_path: str, device: str) -> VLM4VLAAgent:
    from transformers import AutoConfig

    from policies.vlm4vla.tiny import tiny_tokenizer

    agent = VLM4VLAAgent(family, model_path="tiny", device="cpu", dtype="float32", benchmark="libero_long")
    config = AutoConfig.from_pretrained(model_path)
    spec = FAMILIES[family]
    with torch.device(device):
        vlm = spec.model_class()(config).to(torch.bfloat16).eval()
    agent.backbone = spec.backbone()(vlm, tiny_tokenizer(family), None)
    from policies.vlm4vla.head import VLM4VLAModel

    agent.model = VLM4VLAModel(vlm, agent.backbone.hidden_size, 4).to(device=device, dtype=torch.bfloat16).eval()
    agent.device = torch.device(device)
    return agent


def libero_pixels() -> None:
    import gymnasium as gym

    import vla_gym  # noqa: F401
    from policies.vlm4vla.preprocess import centre_crop_resize

    env = gym.make("VLA/LiberoLong-v0", native_image=True)
    diffs = []
    for episode in (0, 17):
        obs, _ = env.reset(seed=0, options={"episode": episode})
        ours = centre_crop_resize(obs["image"][None])[0].astype(int)
        paper = centre_crop_resize(obs["image_native"][None])[0].astype(int)
        d = np.abs(ours - paper)
        diffs.append(d)
        print(f"episode {episode}: native {obs['image_native'].shape} vs {obs['image'].shape}: mean abs diff "
              f"{d.mean():.2f}/255, p99 {np.percentile(d, 99):.0f}, max {d.max()}")
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 4, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--full", default=None, help="family of a full-size random-weight model")
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--libero-pixels", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.libero_pixels:
        libero_pixels()
        return
    if args.full:
        device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
        agents = {f"{args.full} (full, bf16, {device})": full_agent(args.full, args.model_path or FAMILIES[args.full].default_model, device)}
    else:
        agents = {f: VLM4VLAAgent(f, model_path="tiny", device="cpu", dtype="float32", benchmark="libero_long") for f in args.families}
    header = " ".join(f"B={b:>3} ms" for b in args.batches)
    print(f"{'backbone':<34} {header}   per-sample speed-up of the largest batch vs B=1")
    for name, agent in agents.items():
        with torch.inference_mode():
            times = [time_agent(agent, b, args.repeats) for b in args.batches]
        speedup = (times[0] / args.batches[0]) / (times[-1] / args.batches[-1])
        cells = " ".join(f"{t * 1e3:>8.1f}" for t in times)
        print(f"{name:<34} {cells}   x{speedup:.2f}")


if __name__ == "__main__":
    main()
