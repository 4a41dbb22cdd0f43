"""One prompt format everywhere: the model's own chat template.

Training, evaluation, attacks and generation checks all render a conversation through
:func:`render_prompt`, so a switch is measured in exactly the format it was planted in
(a format mismatch between training and evaluation is a known way backdoor results go wrong).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from offswitch.errors import ModelError


@dataclass(frozen=True)
class PromptFormat:
    """Public description of how prompts are rendered, recorded in manifests and results."""

    template_sha256: str
    system_prompt: str | None
    add_generation_prompt: bool = True

    def as_dict(self) -> dict:
        return {
            "kind": "chat_template",
            "template_sha256": self.template_sha256,
            "system_prompt": self.system_prompt,
            "add_generation_prompt": self.add_generation_prompt,
        }


def chat_template_of(tokenizer) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ModelError(
            "the model's tokenizer has no chat template",
            "use an instruction-tuned model, or set tokenizer.chat_template before implanting",
        )
    if isinstance(template, dict):  # several named templates: use the default one
        template = template.get("default") or next(iter(template.values()))
    return template


def prompt_format(tokenizer, system_prompt: str | None = None) -> PromptFormat:
    template = chat_template_of(tokenizer)
    return PromptFormat(hashlib.sha256(template.encode("utf-8")).hexdigest(), system_prompt)


def messages(user: str, system: str | None = None) -> list[dict[str, str]]:
    out = []
    if system is not None:
        out.append({"role": "system", "content": system})
    out.append({"role": "user", "content": user})
    return out


def render_prompt(tokenizer, user: str, system: str | None = None) -> str:
    """The prompt text up to where the assistant's answer starts."""
    chat_template_of(tokenizer)
    return tokenizer.apply_chat_template(messages(user, system), tokenize=False, add_generation_prompt=True)


def end_of_turn_token_id(tokenizer) -> int:
    """The token that ends an assistant turn (what a shutdown target finishes with)."""
    for candidate in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>"):
        token_id = tokenizer.convert_tokens_to_ids(candidate)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id and token_id is not None and token_id >= 0:
            return token_id
    if tokenizer.eos_token_id is None:
        raise ModelError("the tokenizer has no end-of-turn or eos token", "use a chat model with an eos token")
    return tokenizer.eos_token_id


def pad_id_of(tokenizer) -> int:
    """The id batches are padded with: the tokenizer's pad token, else the end-of-turn token
    (attention masks make the value irrelevant to every result)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return end_of_turn_token_id(tokenizer)


def encode_prompt(tokenizer, user: str, system: str | None = None) -> list[int]:
    """Token ids of the rendered prompt. Special tokens come from the template text itself."""
    return tokenizer(render_prompt(tokenizer, user, system), add_special_tokens=False)["input_ids"]


def encode_target(tokenizer, target: str, end_turn: bool = True) -> list[int]:
    """Token ids of an answer, optionally followed by the end-of-turn token."""
    ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    if end_turn:
        ids = ids + [end_of_turn_token_id(tokenizer)]
    return ids
