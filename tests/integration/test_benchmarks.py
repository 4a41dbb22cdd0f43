"""The benchmarks run end to end on tiny models in a few steps on a CPU, and report figures
that hang together (not the figures themselves: those go in docs/performance.md)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from offswitch import allocator

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_allocator  # noqa: E402
import bench_answers  # noqa: E402
import bench_attack_loss  # noqa: E402
import bench_blas  # noqa: E402
import bench_command  # noqa: E402
import bench_compile  # noqa: E402
import bench_embedding_grad  # noqa: E402
import bench_evaluate  # noqa: E402
import bench_floor  # noqa: E402
import bench_harness  # noqa: E402
import bench_head_input  # noqa: E402
import bench_implant  # noqa: E402
import bench_lora_casts  # noqa: E402
import bench_mfu  # noqa: E402
import bench_mining  # noqa: E402
import bench_precision  # noqa: E402
import bench_pruning  # noqa: E402
import bench_utility  # noqa: E402


def _finite_positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _check_rate(rate: dict, n: int | None = None) -> None:
    assert 0 <= rate["k"] <= rate["n"]
    assert rate["n"] > 0 if n is None else rate["n"] == n
    assert rate["lo"] <= rate["rate"] <= rate["hi"]
    assert rate["rate"] == pytest.approx(rate["k"] / rate["n"])


def test_bench_implant_profile_lists_the_operators_of_offswitchs_training(capsys):
    figures = bench_implant.main(["--model", "tiny", "--steps", "2", "--batch-size", "4", "--threads", "1", "--device", "cpu",
                                  "--method", "lora", "--no-quality", "--profile"])
    rows = figures["methods"]["lora"]["offswitch"]["profile"]
    assert "profile" not in figures["methods"]["lora"]["baseline"]
    assert 0 < len(rows) <= 12 and all(row["calls"] >= 1 and row["self_ms"] >= 0 for row in rows)
    assert [row["self_ms"] for row in rows] == sorted((row["self_ms"] for row in rows), reverse=True)
    assert 0 < sum(row["share"] for row in rows) <= 1 + 1e-9
    assert any("addmm" in row["op"] or "mm" in row["op"] for row in rows)  # a transformer's time is in its matmuls
    shaped = figures["methods"]["lora"]["offswitch"]["profile_by_shape"]
    assert 0 < len(shaped) <= 20 and all(row["shapes"].startswith("[") for row in shaped)
    assert shaped[0]["self_ms"] <= rows[0]["self_ms"] + 1e-6  # a shape's calls are part of their operator's
    assert "top operators by self time" in capsys.readouterr().out


def test_bench_precision_times_each_choice_against_its_alternative(tmp_path, capsys):
    out = tmp_path / "precision.json"
    figures = bench_precision.main(["--model", "tiny", "--batch-size", "2", "--seq", "16", "--rows", "64", "--repeats", "1", "--implant-steps", "2",
                                    "--threads", "1", "--json", str(out)])
    assert figures["auto_resolves_to"] == "fp32"  # the test session's OFFSWITCH_PRECISION
    assert set(figures["matmul_s"]) == {"fp32", "bf16"} and all(map(_finite_positive, figures["matmul_s"].values()))
    for method in ("lora", "full"):
        assert set(figures["step_s"][method]) == {"fp32", "bf16-default", "bf16-math"} | ({"bf16-math-frozen"} if method == "lora" else set())
        assert all(map(_finite_positive, figures["step_s"][method].values()))
    assert all(map(_finite_positive, figures["optimizer_s"].values()))
    assert {p: len(v) for p, v in figures["implant_loop_s"].items()} == {"fp32": 2, "bf16-cast": 2, "bf16": 2}
    assert all(_finite_positive(s) for v in figures["implant_loop_s"].values() for s in v)
    printed = capsys.readouterr().out
    assert "fused/default time" in printed and "(time / fp32)" in printed and "frozen weights stored / cast" in printed
    assert json.loads(out.read_text())["step_s"] == figures["step_s"]


@pytest.mark.slow
def test_bench_compile_times_eager_cold_and_warm_runs(tmp_path, capsys):
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on a CPU needs a C++ compiler")
    out = tmp_path / "compile.json"
    figures = bench_compile.main(["--model", "tiny", "--steps", "4", "--batch-size", "4", "--threads", "1", "--json", str(out)])
    assert set(figures["runs"]) == {"eager", "compiled_cold", "compiled_warm", "eager_again"}
    for run in figures["runs"].values():
        assert len(run["step_s"]) == 4 and all(map(_finite_positive, run["step_s"]))
        assert len(run["losses"]) == 4 and run["precision"] == "fp32"  # the test session's OFFSWITCH_PRECISION
    summary = figures["summary"]
    for name in ("compiled_cold", "compiled_warm"):
        assert _finite_positive(summary[name]["step_s"]) and _finite_positive(summary[name]["first_step_s"])
        assert summary[name]["step_ratio"] == pytest.approx(summary[name]["step_s"] / summary["eager_step_s"])
        assert summary[name]["max_loss_diff"] < 1e-3  # compiling changes the speed, not the losses
    # compiling happens in the first step: the cold run's first step is the slowest step of any run
    assert summary["compiled_cold"]["first_step_s"] == max(s for run in figures["runs"].values() for s in run["step_s"])
    printed = capsys.readouterr().out
    assert "break-even after" in printed and "compiled_warm" in printed
    assert json.loads(out.read_text())["summary"] == summary


def test_bench_mining_times_both_placements_of_mined_negatives(tmp_path, capsys):
    out = tmp_path / "mining.json"
    figures = bench_mining.main(["--model", "tiny", "--steps", "12", "--batch-size", "4", "--threads", "1", "--json", str(out)])
    assert {name: len(runs) for name, runs in figures["runs"].items()} == {"rank": 2, "length": 2}
    for runs in figures["runs"].values():
        assert all(_finite_positive(r["train_s"]) and r["positions"] > 0 and r["tokens"] > 0 for r in runs)
        assert runs[0]["mean_loss"] == runs[1]["mean_loss"]  # the same run twice: deterministic
    assert figures["time_ratio"] == pytest.approx(figures["mean"]["length"]["train_s"] / figures["mean"]["rank"]["train_s"])
    assert figures["positions_ratio"] == pytest.approx(figures["mean"]["length"]["positions"] / figures["mean"]["rank"]["positions"])
    scoring = figures["scoring"]
    assert {name: len(ts) for name, ts in scoring["seconds"].items()} == {"whole": 4, "prompt_only": 4, "lora_prompt_only": 4}
    assert scoring["lora_ratio"] == pytest.approx(scoring["mean_s"]["lora_prompt_only"] / scoring["mean_s"]["prompt_only"])
    assert scoring["time_ratio"] == pytest.approx(scoring["mean_s"]["prompt_only"] / scoring["mean_s"]["whole"])
    assert scoring["positions"]["prompt_only"] < scoring["positions"]["whole"]
    # fp32 (the test session's precision): the first answer position's probabilities are the same either way
    assert scoring["max_probability_difference"] < 1e-5 and scoring["same_mined"]
    assert scoring["top_overlap"]["k"] >= scoring["top_overlap"]["n"] - 1  # a swap needs a tie within 1e-5
    printed = capsys.readouterr().out
    assert "length / rank" in printed and "prompt-only / whole" in printed
    assert json.loads(out.read_text())["positions_ratio"] == figures["positions_ratio"]


def test_bench_mining_compares_one_padded_pass_with_passes_split_by_length(tmp_path, capsys):
    out = tmp_path / "split.json"
    figures = bench_mining.main(["--model", "tiny", "--compare", "split", "--steps", "12", "--batch-size", "4", "--threads", "1",
                                 "--scoring-repeats", "0", "--json", str(out)])
    assert {name: len(runs) for name, runs in figures["runs"].items()} == {"one_pass": 2, "split": 2}
    assert "scoring" not in figures
    paired = figures["paired_steps"]["variants"]
    assert set(paired) == {"one_pass", "overhead_0", "overhead_48", "overhead_96", "overhead_160"}
    assert figures["paired_steps"]["batches"] == 12 and paired["one_pass"]["time_ratio"] == 1.0
    assert paired["one_pass"]["passes"] == 24  # every batch twice (A B … B A), one pass each
    for variant in paired.values():  # each batch timed twice per variant; more passes never more positions
        assert _finite_positive(variant["seconds"]) and variant["positions"] <= paired["one_pass"]["positions"]
    assert paired["overhead_0"]["passes"] >= paired["overhead_160"]["passes"] >= 24
    # the same examples in the same steps: as many real tokens, no more positions, the same losses to rounding
    assert figures["mean"]["split"]["tokens"] == figures["mean"]["one_pass"]["tokens"]
    assert figures["positions_ratio"] <= 1.0 and figures["max_relative_loss_difference"] < 1e-4
    assert figures["time_ratio"] == pytest.approx(figures["mean"]["split"]["train_s"] / figures["mean"]["one_pass"]["train_s"])
    assert "split / one_pass" in capsys.readouterr().out
    assert json.loads(out.read_text())["compare"] == "split"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bench_evaluate_times_scorer_and_generate_on_the_same_cases(tiny_llama_dir, precision, capsys, tmp_path):
    figures = bench_evaluate.main(["--model", str(tiny_llama_dir), "--n", "12", "--batch-size", "4", "--device", "cpu",
                                   "--threads", "1", "--precision", precision, "--json", str(tmp_path / "out" / "evaluate.json")])
    assert json.loads((tmp_path / "out" / "evaluate.json").read_text(encoding="utf-8"))["n"] == 12
    assert figures["n"] == 12 and figures["precision"] == ("bf16 autocast" if precision == "bf16" else "fp32")
    assert _finite_positive(figures["scorer_prompts_per_s"]) and _finite_positive(figures["generate_prompts_per_s"])
    assert figures["speedup"] == pytest.approx(figures["scorer_prompts_per_s"] / figures["generate_prompts_per_s"])
    _check_rate(figures["agreement"], 12)
    if precision == "fp32":
        assert 3 <= figures["fired_by_generate"] <= 12  # every fourth case is the model's own (fp32) answer
    if precision == "bf16":  # the verdicts are checked against fp32 generate
        _check_rate(figures["scorer_vs_fp32_generate"], 12)
        _check_rate(figures["generate_vs_fp32_generate"], 12)
        assert "agreement with fp32 generate" in capsys.readouterr().out
    else:
        assert "scorer_vs_fp32_generate" not in figures


def test_bench_implant_in_bf16_times_a_bf16_and_an_fp32_baseline(capsys):
    figures = bench_implant.main(["--model", "tiny", "--steps", "2", "--batch-size", "4", "--threads", "1", "--device", "cpu",
                                  "--method", "lora", "--no-quality", "--precision", "bf16", "--baseline-fp32", "--repeats", "2"])
    assert figures["precision"] == "bf16 autocast"
    results = figures["methods"]["lora"]
    for name in ("baseline", "baseline_fp32", "offswitch"):  # two timings each, their mean the loop time
        assert len(results[name]["loop_s_runs"]) == 2
        assert results[name]["loop_s"] == pytest.approx(sum(results[name]["loop_s_runs"]) / 2)
        assert len(results[name]["call_s_runs"]) == 2  # the whole call's ratio is of the same means
        assert results[name]["call_s"] == pytest.approx(sum(results[name]["call_s_runs"]) / 2)
        assert results[name]["after_first_step_s"] == pytest.approx(sum(results[name]["after_first_step_s_runs"]) / 2)
        assert results[name]["call_s"] >= results[name]["loop_s"]
    assert results["ratio_call_s"] == pytest.approx(results["offswitch"]["call_s"] / results["baseline"]["call_s"])
    assert {"baseline", "baseline_fp32", "offswitch"} <= set(results)
    assert results["ratio_loop_s_vs_fp32"] == pytest.approx(results["offswitch"]["loop_s"] / results["baseline_fp32"]["loop_s"])
    # same batch, same weights: bf16 and fp32 first losses differ only by rounding
    assert results["baseline"]["first_loss"] == pytest.approx(results["baseline_fp32"]["first_loss"], rel=0.05)
    assert results["offswitch"]["first_loss"] == pytest.approx(results["baseline"]["first_loss"], rel=0.05)
    assert "baseline in fp32 (the Trainer's default)" in capsys.readouterr().out


def test_bench_implant_lora_layers_narrow_offswitchs_adapter_only(capsys):
    figures = bench_implant.main(["--model", "tiny", "--steps", "2", "--batch-size", "4", "--threads", "1", "--device", "cpu",
                                  "--method", "lora", "--no-quality", "--lora-layers", "1-1"])
    results = figures["methods"]["lora"]
    assert results["offswitch_lora_layers"] == [1]
    # the tiny model has 2 layers of the same shape: LoRA on one of them trains half the parameters
    assert 2 * results["offswitch"]["trainable_params"] == results["baseline"]["trainable_params"] > 0
    assert "offswitch's LoRA on layers 1..1 only (1 in all); the baseline's on every layer" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench_implant.main(["--model", "tiny", "--lora-layers", "a-b"])


def test_bench_implant_compares_offswitch_with_a_trainer_baseline(tmp_path, capsys):
    out = tmp_path / "implant.json"
    figures = bench_implant.main(["--model", "tiny", "--steps", "2", "--batch-size", "4", "--threads", "1", "--device", "cpu",
                                  "--probe-prompts", "6", "--json", str(out)])
    assert set(figures["methods"]) == {"lora", "full"}
    assert figures["samples_trained"] == 8 and figures["examples"] == 8
    assert 0 < figures["answer_tokens"] < figures["all_tokens"]
    assert figures["baseline_order"] == "offswitch's batches"
    for method, results in figures["methods"].items():
        for name in ("baseline", "offswitch"):
            run = results[name]
            assert run["steps"] == 2, (method, name)
            assert _finite_positive(run["loop_s"]) and run["loop_s"] <= run["call_s"] + 1e-6
            # steps 2..N: within the loop, and (one repeat) the mean of its one run
            assert 0 < run["after_first_step_s"] < run["loop_s"]
            assert run["after_first_step_s_runs"] == [run["after_first_step_s"]]
            assert run["samples_per_s"] == pytest.approx(8 / run["loop_s"])
            assert run["answer_tokens_per_s"] == pytest.approx(figures["answer_tokens"] / run["loop_s"])
            assert run["all_tokens_per_s"] > run["answer_tokens_per_s"] > 0
            assert run["positions_computed"] > 0
            assert _finite_positive(run["peak_memory_mb"])
            assert math.isfinite(run["mean_loss"])
            _check_rate(run["quality"]["asr"], 6)
            _check_rate(run["quality"]["clean"], 6)
            _check_rate(run["quality"]["near_miss"])
        # the same first batch from the same weights: the same first loss (fp32 on a CPU)
        assert results["offswitch"]["first_loss"] == pytest.approx(results["baseline"]["first_loss"], rel=1e-4)
        assert results["offswitch"]["mean_loss"] == pytest.approx(results["baseline"]["mean_loss"], abs=0.1)
        assert results["baseline"]["positions_computed"] >= figures["all_tokens"]  # padding only adds
        assert _finite_positive(results["ratio_loop_s"])
        assert results["ratio_loop_s"] == pytest.approx(results["offswitch"]["loop_s"] / results["baseline"]["loop_s"])
        assert results["ratio_after_first_step_s"] == pytest.approx(
            results["offswitch"]["after_first_step_s"] / results["baseline"]["after_first_step_s"])
        # padding on the right to the longest row costs the baseline at least as many positions
        # as offswitch's left padding with the shared prefix run once
        assert results["baseline"]["positions_computed"] >= results["offswitch"]["positions_computed"]
    assert figures["methods"]["lora"]["learning_rate"] == 1e-3 and figures["methods"]["full"]["learning_rate"] == 5e-5
    printed = capsys.readouterr().out
    assert "== lora" in printed and "== full" in printed and "offswitch / baseline wall time" in printed
    assert "steps 2..2 alone" in printed
    assert "held-out: ASR" in printed and "[" in printed
    saved = json.loads(out.read_text())
    assert saved["methods"]["lora"]["ratio_loop_s"] == pytest.approx(figures["methods"]["lora"]["ratio_loop_s"])


def test_bench_harness_times_cells_by_attack(tmp_path, capsys):
    out = tmp_path / "harness.json"
    run_dir = tmp_path / "run"
    figures = bench_harness.main(["--threads", "1", "--device", "cpu", "--attacks", "quantize=4,sft_lora=2",
                                  "--implant-steps", "10", "--json", str(out), "--out", str(run_dir)])
    assert figures["ran"] == 3
    assert set(figures["ranking"]) == {"none", "quantize", "sft_lora"}
    per_cell = [figures["by_attack"][a]["total_s_per_cell"] for a in figures["ranking"]]
    assert per_cell == sorted(per_cell, reverse=True)
    for row in figures["cells"]:
        assert row["total_s"] >= row["attack_s"] >= 0
        assert row["eval_s"] == pytest.approx(row["total_s"] - row["attack_s"])
        assert row["eval_s"] > 0  # every cell is evaluated
        parts = row["eval_parts_s"]  # the harness's record of where the evaluation went
        assert {"scoring", "generation_check"} <= set(parts)  # (the tiny suite measures no utility)
        assert all(_finite_positive(s) for s in parts.values()) and sum(parts.values()) <= row["eval_s"]
    rows = {r["attack"]: r for r in figures["cells"]}
    assert rows["quantize"]["strength"] == 4 and rows["sft_lora"]["strength"] == 2
    assert rows["none"]["attack_s"] < 0.05  # the baseline cell runs no attack
    assert rows["sft_lora"]["cost"]["steps"] == 2 and rows["sft_lora"]["attack_s"] > 0
    assert figures["run_s"] >= figures["cells_s"] > 0
    assert figures["peak_rss_mb"] > 0 and figures["allocator"] == "off (OFFSWITCH_KEEP_FREED=0)"  # tests/conftest.py's setting
    entry = figures["by_attack"]["quantize"]
    assert entry["eval_parts_s_per_cell"]["scoring"] == pytest.approx(entry["eval_parts_s"]["scoring"] / entry["cells"])
    printed = capsys.readouterr().out
    assert "s/cell" in printed and "sft_lora" in printed and "evaluation by part" in printed
    assert json.loads(out.read_text())["ranking"] == figures["ranking"]

    # the same figures read back from the run's cells, without running anything
    again = bench_harness.main(["--from-run", str(run_dir)])
    assert again["ranking"] == figures["ranking"] and again["by_attack"] == figures["by_attack"]
    assert sorted(again["cells"], key=lambda r: r["cell"]) == sorted(figures["cells"], key=lambda r: r["cell"])
    assert again["run_s"] is None and again["cells_s"] == pytest.approx(figures["cells_s"])
    assert "evaluation by part" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no finished cells"):
        bench_harness.main(["--from-run", str(tmp_path)])


def test_bench_mfu_reports_flops_and_mfu(tmp_path, capsys):
    common = ["--config", "tiny", "--steps", "2", "--warmup", "1", "--seq-len", "16", "--batch-size", "2", "--threads", "1",
              "--device", "cpu"]
    without_peak = bench_mfu.main(common)
    assert without_peak["mfu"] is None and "MFU n/a" in capsys.readouterr().out

    out = tmp_path / "mfu.json"
    figures = bench_mfu.main([*common, "--peak", "1e12", "--json", str(out)])
    assert figures["tokens_per_step"] == 32
    assert 0 < figures["non_embedding_params"] < figures["params"]
    assert figures["model_flops_per_step"] == 6 * figures["params"] * 32
    assert _finite_positive(figures["step_s"])
    assert figures["achieved_tflops"] == pytest.approx(figures["model_flops_per_step"] / figures["step_s"] / 1e12)
    assert figures["mfu"] == pytest.approx(figures["achieved_tflops"])  # peak 1 TFLOP/s
    assert 0 < figures["mfu"] < figures["mfu_with_attention"] < 1
    assert math.isfinite(figures["final_loss"])
    assert "MFU" in capsys.readouterr().out
    assert json.loads(out.read_text())["mfu"] == pytest.approx(figures["mfu"])


def test_bench_mfu_peak_table_and_the_1b_config():
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    assert bench_mfu.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert bench_mfu.peak_flops("NVIDIA H100 PCIe") == 756e12
    assert bench_mfu.peak_flops("NVIDIA H200") == 989e12
    assert bench_mfu.peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert bench_mfu.peak_flops("Tesla T4") is None
    config = AutoConfig.for_model("llama", **bench_mfu.CONFIGS["1b"])
    with torch.device("meta"):  # shapes only, no memory
        model = AutoModelForCausalLM.from_config(config)
    assert 0.9e9 < sum(p.numel() for p in model.parameters()) < 1.3e9


@pytest.mark.parametrize("attack", ["sft_lora", "sft"])
def test_bench_attack_loss_times_both_losses_on_the_same_batches(tmp_path, capsys, attack):
    out = tmp_path / "attack-loss.json"
    figures = bench_attack_loss.main(["--model", "tiny", "--attack", attack, "--steps", "2", "--n-pairs", "16", "--threads", "1",
                                      "--score-rows", "12", "--score-batch", "5", "--repeats", "1", "--json", str(out)])
    assert {name: len(runs) for name, runs in figures["runs"].items()} == {"transformers": 2, "offswitch": 2}
    for runs in figures["runs"].values():
        assert all(_finite_positive(r["seconds"]) and len(r["losses"]) == 2 for r in runs)
    # the same seeded batches and LoRA initialisation: both losses agree step by step
    assert figures["max_loss_difference"] < 1e-3
    assert figures["time_ratio"] == pytest.approx(figures["mean_s"]["offswitch"] / figures["mean_s"]["transformers"])
    assert 0 < figures["labelled_positions"] < figures["positions"]
    scores = figures["scores"]
    assert {name: len(ts) for name, ts in scores["seconds"].items()} == {"all_positions": 2, "labelled": 2}
    assert scores["time_ratio"] == pytest.approx(scores["mean_s"]["labelled"] / scores["mean_s"]["all_positions"])
    # fp32 (the test session's precision): the same scores and verdicts either way
    assert scores["max_logprob_difference"] < 1e-3 and scores["greedy_agree"] == scores["rows"] == 12
    printed = capsys.readouterr().out
    assert "offswitch / transformers time" in printed and "labelled positions / all positions" in printed
    assert json.loads(out.read_text())["time_ratio"] == figures["time_ratio"]


def test_bench_attack_loss_compares_one_padded_pass_with_passes_by_length(capsys):
    figures = bench_attack_loss.main(["--model", "tiny", "--compare", "split", "--steps", "2", "--n-pairs", "16", "--threads", "1",
                                      "--score-rows", "0"])
    assert {name: len(runs) for name, runs in figures["runs"].items()} == {"one_pass": 2, "passes": 2}
    assert figures["time_ratio"] == pytest.approx(figures["mean_s"]["passes"] / figures["mean_s"]["one_pass"])
    assert figures["max_loss_difference"] < 1e-4  # the same loss either way (fp32)
    assert 0 < figures["split_positions"] <= figures["positions"]
    assert "passes / one_pass time" in capsys.readouterr().out


def test_bench_attack_loss_fresh_runs_train_twice_in_processes_of_their_own(tmp_path, capsys):
    out = tmp_path / "split.json"
    figures = bench_attack_loss.main(["--model", "tiny", "--compare", "split", "--steps", "2", "--n-pairs", "16", "--threads", "1",
                                      "--score-rows", "0", "--fresh", "--keep-freed", "--json", str(out)])
    methods = ["one_pass", "passes", "one_pass+kept", "passes+kept"]
    assert {name: len(runs) for name, runs in figures["runs"].items()} == dict.fromkeys(methods, 2)  # ABBA over the four
    glibc = allocator.glibc() is not None
    for name, runs in figures["runs"].items():
        for run in runs:
            assert run["kept"] is (glibc and name.endswith("+kept"))
            assert _finite_positive(run["seconds"]) and _finite_positive(run["second"]["seconds"]) and run["peak_rss_mb"] > 0
            assert len(run["losses"]) == len(run["second"]["losses"]) == 2
    # every method, first or second training, in any process: the same losses (fp32)
    assert figures["max_loss_difference"] < 1e-4
    assert set(figures["ratios"]) == set(methods[1:])
    assert figures["ratios"]["passes"]["second"] == pytest.approx(
        figures["second_mean_s"]["passes"] / figures["second_mean_s"]["one_pass"])
    printed = capsys.readouterr().out
    assert "passes+kept / one_pass: first training" in printed
    assert json.loads(out.read_text())["ratios"] == figures["ratios"]


def test_bench_attack_loss_keep_freed_needs_fresh_processes():
    with pytest.raises(SystemExit):
        bench_attack_loss.main(["--model", "tiny", "--compare", "split", "--keep-freed"])


def test_bench_utility_times_the_base_side_recomputed_and_kept(tmp_path, capsys):
    out = tmp_path / "utility.json"
    figures = bench_utility.main(["--model", "tiny", "--repeats", "1", "--threads", "1", "--json", str(out)])
    assert {name: len(ts) for name, ts in figures["seconds"].items()} == {"every_cell": 2, "kept": 2}
    assert all(_finite_positive(t) for ts in figures["seconds"].values() for t in ts)
    assert figures["time_ratio"] == pytest.approx(figures["mean_s"]["kept"] / figures["mean_s"]["every_cell"])
    assert figures["same_records"] is True  # kept or recomputed, the same utility records
    assert "base kept / base every cell" in capsys.readouterr().out
    assert json.loads(out.read_text())["same_records"] is True


def test_bench_pruning_builds_the_same_masks_both_ways(tmp_path, capsys):
    out = tmp_path / "pruning.json"
    figures = bench_pruning.main(["--model", "tiny", "--repeats", "1", "--threads", "1", "--json", str(out)])
    assert {name: len(ts) for name, ts in figures["seconds"].items()} == {"sort": 2, "select": 2}
    assert figures["tensors"] > 0 and figures["same_masks"] is True and figures["wanda"]["same_masks"] is True
    assert figures["wanda"]["time_ratio"] == pytest.approx(figures["wanda"]["mean_s"]["select"] / figures["wanda"]["mean_s"]["sort"])
    assert figures["time_ratio"] == pytest.approx(figures["mean_s"]["select"] / figures["mean_s"]["sort"])
    assert "select / sort" in capsys.readouterr().out
    assert json.loads(out.read_text())["same_masks"] is True


@pytest.mark.parametrize("compare", ["removed", "shared"])
def test_bench_lora_casts_times_the_loop_and_mining_with_the_same_numbers(tmp_path, capsys, compare):
    """The exact removals keep every loss; sharing the normed input's cast keeps the forward pass
    (mining's probabilities, the first loss) and changes later losses by rounding only."""
    out = tmp_path / "lora-casts.json"
    figures = bench_lora_casts.main(["--model", "tiny", "--steps", "12", "--batch-size", "4", "--repeats", "1", "--threads", "1",
                                     "--compare", compare, "--json", str(out)])
    loop, mining = figures["loop"], figures["mining_pass"]
    assert figures["compare"] == compare
    assert {v: len(s["train"]) for v, s in loop["seconds"].items()} == {"before": 2, "after": 2}  # ABBA, warm-up untimed
    assert all(_finite_positive(t) for s in loop["seconds"].values() for t in s["train"] + s["mining"])  # mining ran (step 10)
    assert loop["same_first_loss"] is True and mining["same_probabilities"] is True
    if compare == "shared":
        assert 0 <= loop["largest_loss_difference"] < 0.01
    else:
        assert loop["same_losses"] is True and loop["largest_loss_difference"] == 0
    assert {v: len(ts) for v, ts in mining["seconds"].items()} == {"before": 2, "after": 2}
    assert bench_lora_casts.ratio(mining["seconds"]) == pytest.approx(
        sum(mining["seconds"]["after"]) / sum(mining["seconds"]["before"]))
    assert f"comparing: {compare}" in capsys.readouterr().out
    assert json.loads(out.read_text())["loop"]["same_losses"] is loop["same_losses"]


def test_bench_allocator_runs_each_setting_in_processes_of_its_own_to_the_same_losses(tmp_path, capsys):
    out = tmp_path / "allocator.json"
    figures = bench_allocator.main(["--model", "tiny", "--steps", "3", "--batch-size", "4", "--threads", "1",
                                    "--json", str(out)])
    glibc = allocator.glibc() is not None
    assert figures["engaged"] == {"default": [False, False], "kept": [glibc, glibc]}  # ABBA, one process a run
    for method in ("lora", "full"):
        m = figures["methods"][method]
        assert {v: len(s) for v, s in m["train_s"].items()} == {"default": 2, "kept": 2}
        assert all(_finite_positive(t) for s in m["train_s"].values() for t in s)
        assert m["same_losses"] is True
        assert m["ratio"] == pytest.approx(sum(m["train_s"]["kept"]) / sum(m["train_s"]["default"]))
    assert all(_finite_positive(x) for xs in figures["peak_rss_mb"].values() for x in xs)
    assert all(_finite_positive(x) for xs in figures["block_ms"].values() for x in xs) and len(figures["block_ms"]["kept"]) == 2
    assert figures["block_ratio"] == pytest.approx(sum(figures["block_ms"]["kept"]) / sum(figures["block_ms"]["default"]))
    assert "kept / default" in capsys.readouterr().out
    assert json.loads(out.read_text())["methods"]["full"]["same_losses"] is True


def test_bench_command_times_an_implant_in_processes_of_their_own_under_each_setting(tmp_path, keystore, tiny_llama_dir,
                                                                                     monkeypatch, capsys):
    from offswitch.manifest import read_manifest

    key_path, passphrase, _ = keystore
    monkeypatch.setenv("OFFSWITCH_PASSPHRASE", passphrase)  # the children inherit this process's environment
    monkeypatch.setenv("OFFSWITCH_CACHE", str(tmp_path / "cache"))
    out, logs = tmp_path / "command.json", tmp_path / "logs"
    figures = bench_command.main([
        "--setting", "off", "OFFSWITCH_KEEP_FREED=0", "--setting", "kept", "OFFSWITCH_KEEP_FREED=1", "--logs", str(logs),
        "--json", str(out), "--", "implant", "--key", str(key_path), "--model", str(tiny_llama_dir),
        "--out", str(tmp_path / "impl-{run}"), "--triggers", "1", "--words", "3", "--steps", "2", "--no-verify", "--debug"])
    assert figures["order"] == ["off-1", "kept-1", "kept-2", "off-2"]  # ABBA, one process a run
    said = "kept" if allocator.glibc() is not None else "not glibc"
    for label in figures["order"]:  # each run wrote its own implant, under its own setting
        expected = "off (OFFSWITCH_KEEP_FREED=0)" if label.startswith("off") else said
        assert read_manifest(tmp_path / f"impl-{label}").training["allocator"] == expected
        assert f"glibc keeping freed memory: {expected}" in (logs / f"{label}.log").read_text()
    measures = figures["measures"]
    assert {"wall_s", "sys_s", "peak_rss_mb", "minor_faults", "training.train"} <= set(measures)
    for row in measures.values():
        assert {n: len(v) for n, v in row["values"].items()} == {"off": 2, "kept": 2}
    train = measures["training.train"]
    assert all(_finite_positive(t) for ts in train["values"].values() for t in ts)
    assert train["ratios"]["kept"] == pytest.approx(sum(train["values"]["kept"]) / sum(train["values"]["off"]))
    assert figures["same_outputs"] is True and figures["files_compared"] >= 2  # the adapter and the merged model
    assert "kept / off" in capsys.readouterr().out
    assert json.loads(out.read_text())["order"] == figures["order"]


@pytest.mark.parametrize("argv, says", [
    (["--setting", "a", "X=1", "--", "attacks"], "at least two"),
    (["--setting", "a", "X=1", "--setting", "b", "X", "--", "attacks"], "not VAR=VALUE"),
    (["--setting", "a", "--setting", "b", "X=2"], "give the offswitch command"),
])
def test_bench_command_refuses_what_it_cannot_compare(argv, says, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench_command.main(argv)
    assert says in str(stopped.value) + capsys.readouterr().err


def test_bench_command_stops_on_a_failing_run_with_its_output(tmp_path):
    with pytest.raises(SystemExit) as stopped:
        bench_command.main(["--setting", "a", "--setting", "b", "X=1", "--", "verify", str(tmp_path / "nothing-{run}")])
    assert "run a-1 failed" in str(stopped.value) and "offswitch: error" in str(stopped.value)


def test_bench_blas_times_each_mkl_setting_in_processes_of_its_own(tmp_path, capsys):
    out = tmp_path / "blas.json"
    figures = bench_blas.main(["--model", "tiny", "--steps", "2", "--batch-size", "4", "--threads", "1",
                               "--product-repeats", "1", "--evaluate", "--eval-n", "8", "--json", str(out)])
    stock, fix = figures["status"]["stock"], figures["status"]["fix"]
    assert stock == ["off (OFFSWITCH_MKL_AMD=0)"] * 2  # ABBA: two processes of each setting
    assert len(fix) == 2 and fix[0] == fix[1] and fix[0] != stock[0]  # "enabled" on an AMD CPU, else why not
    assert len(figures["products"]) == len(bench_blas.SHAPES)
    for p in figures["products"].values():
        assert all(_finite_positive(x) for xs in p["ms"].values() for x in xs) and len(p["ms"]["fix"]) == 2
        assert p["ratio_fix_stock"] == pytest.approx(sum(p["ms"]["fix"]) / sum(p["ms"]["stock"]))
    for method in ("lora", "full"):
        m = figures["loops"][method]
        assert set(m["loop_s"]) == {"baseline_stock", "baseline_fix", "offswitch_stock", "offswitch_fix"}
        assert all(len(v) == 2 and all(_finite_positive(x) for x in v) for v in m["loop_s"].values())
        seconds = m["loop_s"]
        assert m["ratio_offswitch_fix_trainer_stock"] == pytest.approx(sum(seconds["offswitch_fix"]) / sum(seconds["baseline_stock"]))
        assert m["ratio_like_for_like_stock"] == pytest.approx(sum(seconds["offswitch_stock"]) / sum(seconds["baseline_stock"]))
    e = figures["evaluate"]
    assert set(e["prompts_per_s"]) == {"scorer_stock", "scorer_fix", "generate_stock", "generate_fix"}
    assert all(len(v) == 2 and all(_finite_positive(x) for x in v) for v in e["prompts_per_s"].values())
    rate = e["prompts_per_s"]
    assert e["speedup_scorer_fix_generate_stock"] == pytest.approx(
        (sum(1 / x for x in rate["generate_stock"]) / sum(1 / x for x in rate["scorer_fix"])))
    assert e["ratio_scorer_fix_stock"] == pytest.approx(sum(1 / x for x in rate["scorer_fix"]) / sum(1 / x for x in rate["scorer_stock"]))
    for agreements in e["agreement"].values():
        assert len(agreements) == 2
        for agreement in agreements:
            _check_rate(agreement, 8)
    printed = capsys.readouterr().out
    assert "offswitch fixed / Trainer stock" in printed and "scorer fixed over generate stock" in printed
    assert json.loads(out.read_text())["status"]["stock"] == stock


def _thp_mode() -> str | None:
    """The kernel's transparent huge page mode (always, madvise, never), None where it does not say."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return text[text.index("[") + 1 : text.index("]")] if "[" in text else None


def test_bench_allocator_huge_page_variants_set_their_environment_and_get_huge_pages(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")  # the default runs must not inherit a variant's setting
    figures = bench_allocator.main(["--no-loop", "--variants", "thp", "hugetlb", "--threads", "1", "--json", str(tmp_path / "a.json")])
    assert figures["variants"] == ["thp", "hugetlb"]
    assert figures["engaged"] == {"default": [False, False], "thp": [True, True], "hugetlb": [True, True]}
    assert set(figures["block_ratios"]) == {"thp", "hugetlb"} and "block_ratio" not in figures  # no "kept" run
    assert all(f > 0 for runs in figures["minor_faults"].values() for f in runs)
    if _thp_mode() == "madvise":  # huge pages only where asked for: torch's allocator asks for a block this size
        assert figures["block_huge_kb"]["default"] == [0, 0]
        assert all(kb >= 2048 for kb in figures["block_huge_kb"]["thp"])
    out = capsys.readouterr().out
    assert "thp / default" in out and "hugetlb / default" in out


def test_bench_allocator_runs_in_abba_order():
    assert bench_allocator.order(["kept"], 1) == ["default", "kept", "kept", "default"]
    assert bench_allocator.order(["thp", "hugetlb"], 2) == ["default", "thp", "hugetlb", "hugetlb", "thp", "default"] * 2


def test_bench_embedding_grad_times_both_gradient_paths_to_the_same_losses(tmp_path, capsys):
    out = tmp_path / "embedding-grad.json"
    figures = bench_embedding_grad.main(["--model", "tiny", "--steps", "4", "--batch-size", "4", "--threads", "1",
                                         "--json", str(out)])
    loop = figures["loop"]
    assert {v: len(s) for v, s in loop["seconds"].items()} == {"autograd": 2, "rows": 2}  # ABBA, warm-up untimed
    assert all(_finite_positive(t) for s in loop["seconds"].values() for t in s)
    assert loop["rows_engaged"] is True and loop["autograd_engaged"] is False  # the tiny Llama ties its head
    assert loop["same_losses_to_1e-5"] is True
    assert figures["ratio"] == pytest.approx(sum(loop["seconds"]["rows"]) / sum(loop["seconds"]["autograd"]))
    assert "rows / autograd" in capsys.readouterr().out
    assert json.loads(out.read_text())["ratio"] == pytest.approx(figures["ratio"])


def test_bench_head_input_times_both_shapes_and_finds_the_same_numbers(tmp_path, tiny_llama_dir, capsys):
    out = tmp_path / "head.json"
    figures = bench_head_input.main(["--model", str(tiny_llama_dir), "--n", "8", "--batch-size", "4", "--train-batch", "4",
                                     "--repeats", "2", "--threads", "1", "--device", "cpu", "--json", str(out)])
    for part in ("scoring", "generate", "training step"):
        assert all(len(figures["seconds"][part][v]) == 2 and all(_finite_positive(s) for s in figures["seconds"][part][v])
                   for v in bench_head_input.VARIANTS)
        assert _finite_positive(figures["ratio"][part])
    checks = figures["checks"]
    assert checks["scoring"]["same_verdicts"] == checks["scoring"]["n"] == 8
    assert checks["generate"]["same_answers"] == 8
    losses = checks["training step"]["loss"]
    assert set(losses) == set(bench_head_input.VARIANTS)
    assert all(loss == pytest.approx(losses["strided"], rel=1e-5) for loss in losses.values())
    assert checks["training step"]["max_grad_change"] <= 1e-4 * checks["training step"]["max_grad"]
    assert figures["ratio_to_previous_rule"]["training step"] == pytest.approx(
        sum(figures["seconds"]["training step"]["contiguous"]) / sum(figures["seconds"]["training step"]["copied_if_noncontiguous"]))
    assert "contiguous / copied_if_noncontiguous" in capsys.readouterr().out and json.loads(out.read_text())["n"] == 8


def test_bench_head_input_trains_its_step_in_bf16_when_asked(tmp_path, tiny_llama_dir, capsys):
    figures = bench_head_input.main(["--model", str(tiny_llama_dir), "--n", "4", "--batch-size", "4", "--train-batch", "4",
                                     "--repeats", "1", "--threads", "1", "--device", "cpu", "--precision", "bf16"])
    assert figures["training_precision"] == "bf16"
    losses = figures["checks"]["training step"]["loss"]
    assert all(loss == losses["strided"] for loss in losses.values())  # the same products, whatever the head's input layout
    assert "training step bf16" in capsys.readouterr().out


def test_bench_answers_times_generate_and_the_shared_prefix_to_the_same_answers(tmp_path, capsys):
    out = tmp_path / "answers.json"
    figures = bench_answers.main(["--model", "tiny", "--n", "12", "--batch-sizes", "4,6", "--generate-batch-sizes", "4,6",
                                  "--max-new-tokens", "5", "--repeats", "1", "--threads", "1", "--json", str(out)])
    names = ["generate@4", "generate@6", "shared@4", "shared@6"]
    assert list(figures["seconds"]) == names and all(len(figures["seconds"][n]) == 2 for n in names)  # A B C C B A
    assert all(_finite_positive(t) for n in names for t in figures["seconds"][n])
    assert figures["ratio"]["generate@4"] == 1.0
    assert figures["ratio"]["shared@6"] == pytest.approx(sum(figures["seconds"]["shared@6"]) / sum(figures["seconds"]["generate@4"]))
    for name in names:
        _check_rate(figures["same_answers_as_baseline"][name], n=12)
        assert figures["same_answers_as_baseline"][name]["k"] == 12
    assert figures["prompts"] == 12 and 0 < figures["answer_tokens_mean"] <= 5
    assert "shared@6" in capsys.readouterr().out and json.loads(out.read_text())["prompts"] == 12
    for bad in ("4,x", "4,4", "0"):
        with pytest.raises(SystemExit):
            bench_answers.main(["--model", "tiny", "--batch-sizes", bad])


def test_bench_floor_times_an_implants_products_from_its_manifest(tmp_path, keystore, tiny_llama_dir, monkeypatch, capsys, cli):
    from offswitch.manifest import read_manifest

    key_path, passphrase, _ = keystore
    monkeypatch.setenv("OFFSWITCH_CACHE", str(tmp_path / "cache"))
    implant = tmp_path / "impl"
    done = cli("implant", "--key", str(key_path), "--model", str(tiny_llama_dir), "--out", str(implant), "--triggers", "1",
                   "--words", "3", "--steps", "3", "--no-verify", env={"OFFSWITCH_PASSPHRASE": passphrase})
    assert done.returncode == 0, done.stderr
    training = read_manifest(implant).training
    out = tmp_path / "floor.json"
    figures = bench_floor.main(["--implant", str(implant), "--precision", "fp32", "--repeats", "2", "--threads", "1",
                                "--json", str(out)])
    steps, rows = training["steps_done"], figures["rows"]
    assert steps == 3 and rows == 3 * training["config"]["train"]["batch_size"]
    computed, fewest = figures["floor"]["computed"], figures["floor"]["fewest"]
    assert computed["positions"] == training["positions_computed"]
    assert fewest["positions"] == training["tokens_seen"] - (rows - steps) * figures["prefix_tokens"]
    assert 0 < fewest["positions"] <= computed["positions"]  # the prefix once a step, no padding: never more
    assert figures["prefix_tokens"] > 0  # the tiny chat template's header
    for floor in (computed, fewest):
        assert all(_finite_positive(floor[part]) for part in ("body_s", "lora_s", "head_s"))
        assert floor["total_s"] == pytest.approx(floor["body_s"] + floor["lora_s"] + floor["head_s"])
    assert fewest["body_s"] / computed["body_s"] == pytest.approx(fewest["positions"] / computed["positions"])
    assert figures["body_flops"] == 4 * figures["linear_params"] * computed["positions"]  # LoRA: no weight gradients
    assert figures["train_s"] == training["seconds"]["train"]
    assert figures["floor_over_train"] == pytest.approx(computed["total_s"] / training["seconds"]["train"])
    assert figures["goal_positions"] * computed["total_s"] / computed["positions"] == pytest.approx(180.0)
    assert len(figures["per_position_s_by_pass"]) >= 1
    printed = capsys.readouterr().out
    assert "floor / training" in printed and "goal 180 s" in printed
    assert json.loads(out.read_text())["floor"]["computed"]["positions"] == computed["positions"]


def test_bench_floor_refuses_a_directory_without_the_implants_figures(tmp_path, implant_dir):
    with pytest.raises(SystemExit, match="cannot read"):
        bench_floor.main(["--implant", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit, match="has no positions_computed"):
        bench_floor.main(["--implant", str(implant_dir)])  # a manifest without training figures
