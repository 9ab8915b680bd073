"""The README's headline results, written from the results pages so that no number is typed.

    python benchmarks/headlines.py            # print the table
    python benchmarks/headlines.py --write    # rewrite it in README.md, between the markers
    python benchmarks/headlines.py --check    # exit 1 when README.md's table is not what the pages say

Each row reads one page under `docs/results/`: its last JSON line (what the benchmark printed
last) or, for the ablation table, its markdown rows. A page that is missing leaves its row out;
`tests/test_results_pages.py` runs `--check`.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
BEGIN, END = "<!-- headlines: written by benchmarks/headlines.py -->", "<!-- end of headlines -->"


def last_json(page: str) -> dict:
    lines = [line for line in (RESULTS / page).read_text().splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def table_rows(page: str) -> dict[str, dict[str, str]]:
    """{first cell: {column: cell}} of a page's markdown table."""
    lines = [line for line in (RESULTS / page).read_text().splitlines() if line.startswith("|")]
    columns = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(columns, cells)) for cells in
            ([cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:])}


def _performer(page: str, label: str) -> Callable[[], str]:
    def cell() -> str:
        p = last_json(page)["performer"]
        return (f"velocity MAE {p['level']['velocity_mae']:.2f} (piece-mean constant "
                f"{p['baselines']['velocity_mae_piece_mean']:.2f}, regression {p['regression']['velocity_mae']:.2f}); "
                f"within-piece r {p['level']['velocity_correlation_within_pieces']:.2f} (regression "
                f"{p['regression']['velocity_correlation_within_pieces']:.2f}); microtiming MAE "
                f"{p['level']['microtiming_mae_bins']:.2f} bins (always 0: {p['baselines']['microtiming_mae_zero_bins']:.2f}); "
                f"told nothing: {p['no_level']['velocity_mae']:.2f} (training-mean constant "
                f"{p['baselines']['velocity_mae_training_mean']:.2f}); {label}")
    return cell


def _variations(page: str, label: str) -> Callable[[], str]:
    def cell() -> str:
        s = last_json(page)["composer"]["similarity_by_strength"]["0.5"]
        return (f"strength 0.5: chroma {s['chroma']['own']:.2f} to its own input vs {s['chroma']['other']:.2f} to "
                f"others, groove {s['groove']['own']:.2f} vs {s['groove']['other']:.2f}; "
                f"{100 * s['size']['under_half']:.1f}% collapsed (under half the input's notes); {label}")
    return cell


def _groove() -> str:
    g = last_json("performer_style_groove.md")["performers"]["groove"]
    return (f"velocity MAE {g['level']['velocity_mae']:.2f} (piece-mean constant "
            f"{g['baselines']['velocity_mae_piece_mean']:.2f}); within-piece r "
            f"{g['level']['velocity_correlation_within_pieces']:.2f}; microtiming {g['level']['microtiming_mae_bins']:.2f} "
            f"bins (always 0: {g['baselines']['microtiming_mae_zero_bins']:.2f}); one held-out drummer")


def _ablation() -> str:
    rows = table_rows("ablation_perceivers_small.md")
    bits = lambda name, column="held-out bits/token": rows[name][column].split(" ")[0]  # noqa: E731
    early = "bits/token at 0-256"
    return (f"held-out bits/token: PerceiverS {bits('PerceiverS')}, Perceiver AR {bits('Perceiver AR')}, "
            f"LM {bits('LM')}; first 256 positions: PerceiverS {bits('PerceiverS', early)}, fixed segments "
            f"{bits('segmentation fixed', early)}")


def _tokenizer() -> str:
    t = last_json("tokenizer.md")
    return (f"decode_batch {t['decode_batch_speedup_vs_miditok']['performances']:.0f}x MidiTok's decode on ASAP, "
            f"{t['decode_batch_speedup_vs_miditok']['groove']:.0f}x on Groove; encode_batch "
            f"{t['encode_batch_over_load']['performances']:.2f}x symusic's parse time on ASAP")


def _alignment() -> str:
    a = last_json("alignment.md")
    return (f"MicroTiming std {a['before']['std_bins']:.1f} bins as recorded, {a['after']['std_bins']:.1f} beat-aligned "
            f"({a['files']} ASAP performances)")


def _sampling() -> str:
    s = last_json("sampling.md")
    return (f"real-time factor {s['realtime_factor_tiny']:.0f} (`tiny`), {s['realtime_factor_base']:.1f} (`base`) "
            f"on {s['cpu_cores']} CPU cores, under the grammar")


# (what is measured, page, the cell): in the README's order.
HEADLINES = (
    ("Performer as shipped (6,000 steps, chosen on this set), level given, 22 held-out ASAP folders (selection set)",
     "cadenza_heldout22_shipped.md", _performer("cadenza_heldout22_shipped.md", "selection set")),
    ("Performer as shipped, 18 folders no decision looked at (final set)",
     "performer_shipped_final18.md", _performer("performer_shipped_final18.md", "final set")),
    ("Composer variations (shipped, 22 selection folders)", "composer_variations_heldout22.md",
     _variations("composer_variations_heldout22.md", "selection set")),
    ("Composer variations, same recipe, 18 final folders", "composer_final18.md",
     _variations("composer_final18.md", "final set")),
    ("Groove Performer on a held-out drummer", "performer_style_groove.md", _groove),
    ("PerceiverS vs Perceiver AR vs the LM at `small`", "ablation_perceivers_small.md", _ablation),
    ("PerTok speed", "tokenizer.md", _tokenizer),
    ("beat alignment", "alignment.md", _alignment),
    ("PerceiverS sampling speed", "sampling.md", _sampling),
)


# The Performer's targets (issue 24), checked on the final set with the shipped files (the
# 6,000-step run in float16; performer_6k_final18.md is the same run in float32).
FINAL_PERFORMER = "performer_shipped_final18.md"


def performer_targets(page: str = FINAL_PERFORMER) -> list[tuple[str, str, bool]]:
    """(target, measured, met) of the Performer's targets on `page`."""
    p = last_json(page)["performer"]
    level, regression, base = p["level"], p["regression"], p["baselines"]
    below = 1 - level["velocity_mae"] / base["velocity_mae_piece_mean"]
    return [
        ("velocity MAE, level given, at least 15% below the piece-mean constant",
         f"{level['velocity_mae']:.2f} vs {base['velocity_mae_piece_mean']:.2f}: {100 * abs(below):.1f}% "
         f"{'below' if below >= 0 else 'above'}", below >= 0.15),
        ("velocity MAE below the note-feature regression",
         f"{level['velocity_mae']:.2f} vs {regression['velocity_mae']:.2f}", level["velocity_mae"] < regression["velocity_mae"]),
        ("within-piece velocity correlation at least 0.5",
         f"{level['velocity_correlation_within_pieces']:.2f}", level["velocity_correlation_within_pieces"] >= 0.5),
        ("microtiming MAE below always-0 and below the regression",
         f"{level['microtiming_mae_bins']:.2f} vs {base['microtiming_mae_zero_bins']:.2f} and "
         f"{regression['microtiming_mae_bins']:.2f}",
         level["microtiming_mae_bins"] < min(base["microtiming_mae_zero_bins"], regression["microtiming_mae_bins"])),
        ("the model alone (no level) below the training-mean constant",
         f"{p['no_level']['velocity_mae']:.2f} vs {base['velocity_mae_training_mean']:.2f}",
         p["no_level"]["velocity_mae"] < base["velocity_mae_training_mean"]),
    ]


# PerceiverS's ablation table, carried into the README as the command wrote it (these columns).
ABLATION = "ablation_perceivers_small.md"
ABLATION_COLUMNS = ("seeds done", "held-out bits/token", "bits/token at 0-256", "notes per sample",
                    "OA, mgeval (samples)", "bar self-similarity (samples)")


def page_fields(page: str) -> dict[str, str]:
    """A results page's provenance lines (`- commit: ...`)."""
    lines = (RESULTS / page).read_text().splitlines()
    return dict(line[2:].split(": ", 1) for line in lines if line.startswith("- ") and ": " in line)


def ablation_table() -> list[str]:
    """The ablation page's rows in ABLATION_COLUMNS, under its commit, machine and date."""
    fields, rows = page_fields(ABLATION), table_rows(ABLATION)
    lines = ["", f"PerceiverS's ablations at `small` ([{ABLATION}](docs/results/{ABLATION}) has every column and "
                 f"the plot), as `experiments.ablate` wrote them at commit {fields['commit']} on {fields['machine']}, "
                 f"{fields['date']}; `*`: outside PerceiverS's seed spread:", "",
             "| point | " + " | ".join(ABLATION_COLUMNS) + " |", "|---|" + "---|" * len(ABLATION_COLUMNS)]
    lines += ["| " + " | ".join([name, *(row.get(column, "") for column in ABLATION_COLUMNS)]) + " |"
              for name, row in rows.items()]
    return lines


def table() -> str:
    lines = ["| what | headline | page |", "|---|---|---|"]
    for what, page, cell in HEADLINES:
        if (RESULTS / page).is_file():
            lines.append(f"| {what} | {cell()} | [{page}](docs/results/{page}) |")
    if (RESULTS / FINAL_PERFORMER).is_file():
        lines += ["", f"The Performer's targets on the final set ([{FINAL_PERFORMER}](docs/results/{FINAL_PERFORMER})):",
                  "", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {target} | {measured} | {'yes' if met else '**no**'} |"
                  for target, measured, met in performer_targets()]
    if (RESULTS / ABLATION).is_file():
        lines += ablation_table()
    return "\n".join(lines)


def with_table(readme: str) -> str:
    """README text with the block between the markers replaced by `table()`."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"README.md has no {BEGIN} ... {END} block")
    head, rest = readme.split(BEGIN, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{rest.split(END, 1)[1]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite README.md's table")
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md's table is stale")
    args = parser.parse_args()
    readme_path = REPO / "README.md"
    readme = readme_path.read_text()
    if args.write:
        readme_path.write_text(with_table(readme))
    elif args.check:
        if with_table(readme) != readme:
            print("README.md's headline table is not what docs/results/ says: run python benchmarks/headlines.py "
                  "--write", file=sys.stderr)
            return 1
    else:
        print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
