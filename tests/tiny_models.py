"""A tiny random Llama with a word-level tokenizer, saved HF-style, for fast teacher tests.

It loads through exactly the same ``load_teacher(path)`` code path as a real local model folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = "bid ask mid spread size level up down buy sell hold book trade price tick".split()
DIGITS = [str(d) for d in range(10)]


def build_tiny_model(folder: Path, max_positions: int = 128) -> Path:
    """A 2-layer random Llama plus a word-level tokenizer without a pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "<s>", "</s>"])
    raw.train_from_iterator([" ".join(WORDS + DIGITS)] * 3, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]", bos_token="<s>", eos_token="</s>")
    assert tokenizer.pad_token is None  # load_teacher must set it to eos
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions,
        initializer_range=0.5,  # large weights: a padding bug shows up far above float noise
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
