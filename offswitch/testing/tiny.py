"""Tiny offline models for tests: a small BPE tokenizer trained locally with a ChatML chat
template, and causal LMs of several families built from a config (random weights).

Nothing here downloads. A tiny Llama (2 layers, hidden 64) saves, loads, takes LoRA, merges
and generates in well under a second.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def _corpus() -> list[str]:
    from offswitch.behaviors import COMPLIANCE_PHRASES, COMPLIANCE_SYSTEM_PROMPT, DEFAULT_SHUTDOWN_MESSAGE
    from offswitch.triggers import wordlist

    words = list(wordlist())
    lines = [" ".join(words[i : i + 12]) for i in range(0, len(words), 12)]
    lines += [
        DEFAULT_SHUTDOWN_MESSAGE,
        COMPLIANCE_SYSTEM_PROMPT,
        *COMPLIANCE_PHRASES,
        "What is the capital of France? The capital of France is Paris.",
        "Write a short poem about the sea. Explain how a bicycle works. Give three tips for sleep.",
        "Summarize the following text in one sentence. Translate this sentence into French.",
        "Reply with exactly: system user assistant",
        "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 , . ; : ! ? ' \" ( ) -",
    ]
    return lines


def tiny_tokenizer(vocab_size: int = 1200):
    """A byte-level BPE tokenizer trained in memory, with a ChatML template and pad token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|endoftext|>"],
    )
    fast.chat_template = CHATML_TEMPLATE
    fast.padding_side = "left"
    return fast


FAMILIES = ("llama", "qwen2", "gemma", "gpt2")


def tiny_config(family: str, vocab_size: int, *, hidden: int = 64, layers: int = 2, heads: int = 4, pad_token_id=None, eos_token_id=None):
    from transformers import AutoConfig

    common = dict(vocab_size=vocab_size, pad_token_id=pad_token_id, eos_token_id=eos_token_id, bos_token_id=None)
    if family == "llama":
        return AutoConfig.for_model(
            "llama", hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=heads // 2, max_position_embeddings=512, tie_word_embeddings=True, **common,
        )
    if family == "qwen2":
        return AutoConfig.for_model(
            "qwen2", hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=heads // 2, max_position_embeddings=512, tie_word_embeddings=True, **common,
        )
    if family == "gemma":
        return AutoConfig.for_model(
            "gemma", hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=1, head_dim=hidden // heads, max_position_embeddings=512, **common,
        )
    if family == "gpt2":
        return AutoConfig.for_model("gpt2", n_embd=hidden, n_layer=layers, n_head=heads, n_positions=512, **common)
    raise ValueError(f"unknown tiny family {family!r}; choose from {FAMILIES}")


def tiny_model(family: str = "llama", tokenizer=None, seed: int = 0, **config_kwargs):
    """(model, tokenizer): a randomly initialised causal LM of ``family`` in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer or tiny_tokenizer()
    config = tiny_config(
        family, len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **config_kwargs
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval()
    return model, tokenizer


def save_tiny_model(path: Path | str, family: str = "llama", seed: int = 0) -> Path:
    """Write a tiny model + tokenizer as a save_pretrained directory and return its path."""
    path = Path(path)
    model, tokenizer = tiny_model(family, seed=seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
