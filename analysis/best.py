"""The best configuration of a study -> RESULTS_DIR/best/: best.json and its model.pt.

    python -m analysis.best RESULTS_DIR

Chosen by the study's --select metric (the best epoch's val_acc by default, or val_loss,
val_bacc), its mean over the seeds, among the configurations whose seeds all finished;
never by test accuracy. The model kept is that configuration's seed with the best value
of the same metric (the lowest seed on a tie). study.run writes it at the end of every study.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
from typing import Any

from analysis.study_inputs import load_inputs
from analysis.tables import selected
from trainable.cli_options import prog
from trainable.errors import parse_printable
from trainable.results.atomic_io import write_json, write_with
from trainable.results.layout import BEST_DIR, BEST_FILE, MODEL_FILE, SELECTIONS, STUDY_FILE


def choose(results_dir: str) -> dict[str, Any] | None:
    """best.json's content, or None when no configuration has all its seeds finished."""
    s = load_inputs(results_dir, None)
    if not len(s.ranked):
        return None
    best = s.ranked.iloc[0]
    lowest_first = SELECTIONS[s.select][1] == "min"
    trials = s.trials.assign(selected=s.trials.trial_id.map(selected(s.epochs, s.select)))
    trials = trials[(trials.config_id == best.config_id) & trials.val_acc_best.notna() & trials.selected.notna()]
    kept = trials.sort_values(["selected", "seed"], ascending=[lowest_first, True]).iloc[0]
    return {
        "chosen_by": f"mean {s.select} over seeds (--select), configurations whose seeds all finished (never test)",
        "select": s.select,
        "config_id": best.config_id,
        "experiment": int(best.experiment),
        "name": best["name"],
        "differs_from_1": best.differs,
        "settings": {k: best[k] for k in ("weights", "max epochs", "stop rule", "precision", "normalization")},
        "seeds": int(best.seeds),
        "selected": dict(zip(("mean", "lo", "hi"), best.sel, strict=True)),
        "val_acc": dict(zip(("mean", "lo", "hi"), best.val, strict=True)),
        "test_acc_across_seeds": dict(zip(("mean", "lo", "hi"), best.test, strict=True)),
        "test_acc_full_interval": dict(zip(("mean", "lo", "hi"), best.test_full, strict=True)),
        "model_seed": int(kept.seed),
        "model_trial": kept.trial_id,
        "model_selected": float(kept.selected),
        "model_val_acc": float(kept.val_acc_best),
        "model_test_acc": float(kept.test_acc_best),
        "model_source": final_model(results_dir, kept.trial_id),
        "seed_models": [  # every seed's model of this configuration: --evaluate-on scores them all
            {"seed": int(t.seed), "trial": t.trial_id, "model": os.path.relpath(path, results_dir)}
            for t in trials.sort_values("seed").itertuples()
            if (path := final_model(results_dir, t.trial_id))
        ],
    }


def ranked(results_dir: str, top: int) -> list[str]:
    """The config_ids of the `top` best configurations, by the ranking best.json takes its first
    from (what study.run's confirmation stage reruns on fresh seeds)."""
    return load_inputs(results_dir, None).ranked.config_id.head(top).tolist()


def final_model(results_dir: str, trial_id: str) -> str | None:
    """The trial's model.pt in its last checkpoint, or None."""
    checkpoints = sorted(glob.glob(os.path.join(results_dir, trial_id, "checkpoint_*", MODEL_FILE)))
    return checkpoints[-1] if checkpoints else None


NO_BEST = "No configuration has all its seeds finished (see how the trials ended above): no best model kept."


def write_best(results_dir: str) -> str | None:
    """Write RESULTS_DIR/best/ (best.json and model.pt); return a one-line summary."""
    best = choose(results_dir)
    if best is None:
        return None
    directory = os.path.join(results_dir, BEST_DIR)
    os.makedirs(directory, exist_ok=True)
    if best["model_source"]:
        write_with(os.path.join(directory, MODEL_FILE), lambda tmp: shutil.copyfile(best["model_source"], tmp))
    write_json(os.path.join(directory, BEST_FILE), best, indent=1)
    return (
        f"Best configuration (by mean {best['select']} over {best['seeds']} seed(s)): #{best['experiment']} "
        f"{best['name']}, {best['select']} {best['selected']['mean']:.3f}; its seed-{best['model_seed']} model is "
        f"{os.path.join(directory, MODEL_FILE)}"
    )


def answer(results_dir: str) -> str | None:
    """The study's answer as its end prints it: the configuration chosen on validation, its test
    accuracy with the full interval on the runs it was not chosen on, and the commands that set it
    against the baselines on the same split (analysis.report opens with the same answer, and the
    comparisons). None where no configuration was confirmed."""
    import dataclasses

    from trainable.data.dataset_options import DataOptions

    s = load_inputs(results_dir, None)
    best = s.claimed
    if best is None:
        return None
    mean, lo, hi = best.test_full
    said = (
        f"The answer: #{best.experiment} {best['name'].removeprefix('confirm ')}, chosen by mean {s.select} over "
        f"seeds, scores test accuracy {mean:.3f} [{lo:.3f}, {hi:.3f}] (95%: training seeds and test images) on "
        f"{len(best.seed_list)} runs it was not chosen on (seeds {', '.join(map(str, best.seed_list))})."
    )
    given = s.record.args
    if not given.get("data"):  # the smoke grid's generated images: no baselines to set it against
        return said
    data = [  # the data options the study was given, so the baselines see its split
        f"--{f.name.replace('_', '-')} {given[f.name]}"
        for f in dataclasses.fields(DataOptions)
        if f.name in given and given[f.name] is not None and given[f.name] != f.default
    ]
    baselines = os.path.join(os.path.dirname(os.path.abspath(results_dir)), "baselines")
    return (
        f"{said} Against HOG+SVM and LBP+MLP on the same split, with the verdicts and the seeds a question needs:\n"
        f"  python -m analysis.baselines {' '.join(data)} --out {baselines}\n"
        f"  python -m analysis.report {results_dir} --baselines {baselines}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=prog("analysis.best"), description=__doc__.split("\n")[0])
    p.add_argument("results_dir")
    args = parse_printable(p, argv)
    if not os.path.isfile(os.path.join(args.results_dir, STUDY_FILE)):
        print(f"error: {args.results_dir} holds no {STUDY_FILE}; is it a study's results directory?", file=sys.stderr)
        return 2
    print(write_best(args.results_dir) or NO_BEST)
    return 0


if __name__ == "__main__":
    sys.exit(main())
