"""The ablation's variants and its table (the training itself is exercised by the recipe and learning tests)."""

from __future__ import annotations

from lipsync_core.train.ablation import PAPER_VARIANTS, ablation_table, variant_config


def test_variant_configs():
    full = variant_config("audio_aware", 0.1, 256, 3)
    varlen = variant_config("audio_aware_varlen", 0.1, 256, 3)
    lip = variant_config("lip_only", 0.1, 256, 3)
    assert full.model["reference_mode"] == varlen.model["reference_mode"] == "audio_aware"
    assert lip.model["reference_mode"] == "lip_only"
    assert full.min_reference_frames is None and varlen.min_reference_frames == 16
    assert full.reference_frames == 256 and full.seed == 3 and full.steps == varlen.steps == 250  # 10% of 2500


def _runs(values: dict[tuple[str, int], list[float]]) -> list[dict]:
    return [{"variant": v, "n": n, "seed": seed, "lip_lmd": x}
            for (v, n), xs in values.items() for seed, x in enumerate(xs)]


def test_table_means_orderings_and_seed_counts():
    values = {("audio_aware", 16): [0.034, 0.033], ("audio_aware", 64): [0.029, 0.030],
              ("audio_aware", 256): [0.027, 0.028], ("lip_only", 16): [0.035, 0.034],
              ("lip_only", 64): [0.030, 0.031], ("lip_only", 256): [0.028, 0.029], ("none", 0): [0.031, 0.0285],
              ("audio_aware_varlen", 16): [0.029, 0.0335], ("audio_aware_varlen", 64): [0.029, 0.029],
              ("audio_aware_varlen", 256): [0.0285, 0.0285]}
    text = ablation_table({"runs": _runs(values), "variants": [*PAPER_VARIANTS, "audio_aware_varlen"]})
    assert "| audio_aware | 0.03350 ± 0.00050 | 0.02950 ± 0.00050 | 0.02750 ± 0.00050 | 0.01081 |" in text
    assert "| none | 0.02975 ± 0.00125 | (no reference) | (no reference) | 0.01552 |" in text
    assert "at n=256: holds (0.02750 / 0.02850 / 0.02975)" in text and "(16, 64, 256): falls" in text
    # seed 1: lip_only 0.029 is above none 0.0285, so the ordering holds in one seed of two
    assert "the ordering holds in 1, the full model's LipLMD falls with n in 2." in text
    assert "audio_aware_varlen at n=16: below audio_aware in 1 of 2 seeds, below none in 1." in text
    # every ordering seed by seed, with its mean gap and whether the gap clears the seed spread
    assert "| audio_aware < lip_only | 256 | 2 of 2 | +0.00100 | yes (0.00050) |" in text
    assert "| lip_only < none | 256 | 1 of 2 | +0.00125 | no (0.00125) |" in text


def test_table_of_a_run_without_the_papers_three_variants():
    """A run of one extra variant alone (e.g. audio_aware_varlen's seeds) gets its table, not a crash."""
    values = {("audio_aware_varlen", 16): [0.043, 0.044], ("audio_aware_varlen", 64): [0.0438, 0.0434],
              ("audio_aware_varlen", 256): [0.0434, 0.0433]}
    text = ablation_table({"runs": _runs(values), "variants": ["audio_aware_varlen"]})
    assert "| audio_aware_varlen | 0.04350 ± 0.00050 | 0.04360 ± 0.00020 | 0.04335 ± 0.00005 | - |" in text
    assert "Ordering" not in text and "the ordering holds" not in text  # the paper's claims need its variants
    assert "| ordering |" in text and "below audio_aware" not in text
