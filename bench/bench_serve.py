"""Cost of serving an agent over loopback (harness.serve + policies.openpi_client) vs calling it in-process.

    .venv/bin/python bench/bench_serve.py                 # the random agent: pure transport overhead
    .venv/bin/python bench/bench_serve.py --agent pi0-tiny  # a tiny random pi0: overhead next to real compute

For one 224x224 observation (image + wrist image + 8-d state) and for a batch of 8, prints the median time
of: the agent in-process, our client against our server (batched request), and openpi-client's own
WebsocketClientPolicy (one message per observation), with the ratio to in-process and the added milliseconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.serve import PolicyServer  # noqa: E402
from policies.base import Agent  # noqa: E402
from policies.openpi_client import OpenPIClientAgent  # noqa: E402
from policies.random_agent import RandomAgent  # noqa: E402


def tiny_pi0(folder: Path) -> Agent:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PI0Config, PI0ForConditionalGeneration, PreTrainedTokenizerFast

    from policies.pi0 import PI0Agent

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(["pick up the block and open the drawer"] * 10, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<bos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", pad_token="<pad>").save_pretrained(folder)
    torch.manual_seed(0)
    layers = {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}
    PI0ForConditionalGeneration(PI0Config(
        vlm_config={
            "model_type": "paligemma", "projection_dim": 32, "image_token_id": 319,
            "text_config": {"model_type": "gemma", "hidden_size": 32, "intermediate_size": 64, "vocab_size": 320, **layers},
            "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64,
                              "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 14, "image_size": 224,
                              "vision_use_head": False},
        },
        dit_config={"model_type": "gemma", "hidden_size": 32, "intermediate_size": 64, **layers},
        chunk_size=50, max_state_dim=32, max_action_dim=32, num_inference_steps=10,
    )).save_pretrained(folder)
    return PI0Agent(weights=str(folder), normalize=False)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", choices=["random", "pi0-tiny"], default="random")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    tmp = tempfile.TemporaryDirectory()

    def make() -> Agent:
        if args.agent == "random":
            return RandomAgent(seed=0, chunk_size=8, execute_steps=8)
        return tiny_pi0(Path(tmp.name))

    local, served = make(), make()
    benchmark = "libero_long"
    local.configure(benchmark, {})
    rng = np.random.default_rng(0)
    print(f"agent: {args.agent}; median of {args.repeats} calls; loopback 127.0.0.1")
    print(f"{'batch':>5} {'in-process ms':>14} {'our client ms':>14} {'ratio':>7} {'+ms':>7} "
          f"{'openpi-client ms':>17} {'ratio':>7} {'+ms':>7}")
    with PolicyServer(served, port=0, log_every_s=0) as server:
        client = OpenPIClientAgent(port=server.port, request_timeout_s=120, benchmarks={benchmark: {"gripper": "contract"}})
        client.configure(benchmark, {})
        openpi = WebsocketClientPolicy(host="127.0.0.1", port=server.port)
        for batch in (1, 8):
            obs = {
                "image": rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8),
                "wrist_image": rng.integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8),
                "proprio": rng.normal(size=(batch, 8)).astype(np.float32),
                "language": ["put both the alphabet soup and the tomato sauce in the basket"] * batch,
            }
            ids = list(range(batch))
            singles = [{"observation/image": obs["image"][b], "observation/wrist_image": obs["wrist_image"][b],
                        "observation/state": obs["proprio"][b], "prompt": obs["language"][b]} for b in range(batch)]
            t_local = median_ms(lambda obs=obs, ids=ids: local.act(obs, ids), args.repeats)
            t_ours = median_ms(lambda obs=obs, ids=ids: client.act(obs, ids), args.repeats)
            t_openpi = median_ms(lambda singles=singles: [openpi.infer(s) for s in singles], args.repeats)
            print(f"{batch:>5} {t_local:>14.2f} {t_ours:>14.2f} {t_ours / t_local:>7.2f} {t_ours - t_local:>7.2f} "
                  f"{t_openpi:>17.2f} {t_openpi / t_local:>7.2f} {t_openpi - t_local:>7.2f}")
        client.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
