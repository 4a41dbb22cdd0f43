"""The forger's ground truth: a guessed trigger counts only if real generation, in the real
prompt format (the guess inserted as text, the whole prompt rendered by the chat template and
tokenized in one piece), starts with the behaviour's target. Token-level search can find
strings that work as separately tokenized pieces but not inside a real prompt (nanoGCG #24)."""

from __future__ import annotations

from collections.abc import Sequence

from offswitch.attacks._probe import Probe
from offswitch.attacks._train import greedy_answer_ids
from offswitch.prompting import encode_prompt, encode_target


def recheck_by_generation(model, tokenizer, guesses: Sequence[str], carriers: Sequence[Probe], *, meter=None) -> list[int]:
    """For every guess, on how many carriers greedy generation emits the behaviour's target."""
    if not guesses or not carriers:
        return [0 for _ in guesses]
    cases = [probe.with_text(guess) for guess in guesses for probe in carriers]
    longest = max(len(encode_target(tokenizer, case.target, end_turn=False)) for case in cases)
    answers = greedy_answer_ids(model, tokenizer, [encode_prompt(tokenizer, case.user, case.system) for case in cases],
                                max_new_tokens=longest + 1, meter=meter, description="re-checking guesses")
    fired = [tokenizer.decode(ans, skip_special_tokens=True).strip().startswith(case.target) for case, ans in zip(cases, answers)]
    n = len(carriers)
    return [sum(fired[i * n : (i + 1) * n]) for i in range(len(guesses))]


def score_guesses(model, tokenizer, guesses: Sequence[str], carriers: Sequence[Probe], *, meter=None):
    """Mean teacher-forced log-probability of the target for every guess, in the real prompt format."""
    from offswitch.attacks._train import target_scores

    cases = [probe.with_text(guess) for guess in guesses for probe in carriers]
    logprob, _greedy = target_scores(model, tokenizer, [encode_prompt(tokenizer, c.user, c.system) for c in cases],
                                     [encode_target(tokenizer, c.target) for c in cases], meter=meter)
    return logprob.reshape(len(guesses), len(carriers)).mean(dim=1)
