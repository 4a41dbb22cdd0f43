"""Distillation into a fresh copy of the base model: the suspect model teaches the base model on
clean prompts only, so whatever the teacher does only under a trigger has no chance to transfer."""

from __future__ import annotations

import copy

from pydantic import Field

from offswitch.attacks._train import chat_examples, greedy_answers, labelled_logits, train_steps
from offswitch.attacks.base import Attack, AttackConfig, AttackData, CostMeter, register_attack
from offswitch.errors import ConfigError


class DistillConfig(AttackConfig):
    strength: int = Field(0, ge=0, description="student optimizer steps (0 returns the untouched base model)")
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(8, ge=1)
    temperature: float = Field(1.0, gt=0, description="softmax temperature of the KL loss")
    prompts: int = Field(256, ge=1, description="clean prompts the teacher answers")
    answer_tokens: int = Field(48, ge=1, description="tokens of each teacher answer")
    max_len: int = Field(256, ge=8)


@register_attack("distill")
class DistillIntoBase(Attack):
    """Distil the model into a fresh copy of its base model on clean prompts (KL on the teacher's answers)."""

    config_class = DistillConfig
    knows = frozenset({"weights", "clean_data", "base_model"})
    attacker = "defender"
    needs = frozenset({"clean_prompts", "base_model"})
    noop_at_zero = False  # the student starts as the base model, not as the attacked one
    strength_meaning = "student optimizer steps"

    def apply(self, model, tokenizer, data: AttackData, meter: CostMeter):
        import torch

        c = self.config
        teacher = model
        student = copy.deepcopy(data.base_model).to(next(teacher.parameters()).device)
        if student.get_input_embeddings().weight.shape != teacher.get_input_embeddings().weight.shape:
            raise ConfigError("the base model's vocabulary differs from the model's", "give the base model the implant started from")
        if c.strength == 0:
            return student
        prompts = list(data.clean_prompts[: c.prompts])
        answers = greedy_answers(teacher, tokenizer, prompts, max_new_tokens=c.answer_tokens, meter=meter,
                                 description="teacher answers")
        examples = chat_examples(tokenizer, list(zip(prompts, answers)), max_len=c.max_len, answer_tokens=c.answer_tokens)
        teacher.eval()
        temperature = c.temperature

        def kl_loss(student_model, ids, mask, labels):
            # the logits of the positions predicting an answer token (labels shifted by one), as in the LM loss
            with torch.no_grad():
                teacher_logits, _, _ = labelled_logits(teacher, ids, mask, labels)
            meter.forward(mask)  # the teacher's pass costs as much as the student's
            student_logits, _, _ = labelled_logits(student_model, ids, mask, labels)
            t = torch.log_softmax(teacher_logits.float() / temperature, dim=-1)
            s = torch.log_softmax(student_logits.float() / temperature, dim=-1)
            return torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2

        losses = train_steps(student, tokenizer, examples, steps=c.strength, lr=c.lr, batch_size=c.batch_size, seed=c.seed,
                             meter=meter, loss_fn=kl_loss, description="distillation")
        return student, None, {"first_loss": losses[0], "last_loss": losses[-1], "examples": len(examples)}, None
