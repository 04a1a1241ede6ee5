"""The report's sections, each written into an analysis.document.Document from a loaded
Study (analysis.study_inputs); analysis.report puts them in order."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis import figures
from analysis.document import Document
from analysis.stats import METHOD_NOTE, Comparison, accuracy_ci, format_p
from analysis.study_inputs import Study
from analysis.tables import (
    PRIMARY_METRIC,
    balance_table,
    comparison_table,
    comparisons,
    explored,
    importance,
    settings_table,
    summary_table,
    with_ci,
    with_range,
)
from trainable.config import RANDOM_INIT_NOTICE
from trainable.results.atomic_io import write_with
from trainable.results.layout import BEST_DIR, BEST_FILE, MODEL_FILE, SELECTIONS
from trainable.results.study_record import SearchRecord

# The 2021 report's figures (shared/DESIGN.md): experiment -> (val acc, test acc).
REPORTED = {1: (0.73, 0.82), 2: (0.80, 0.84), 3: (0.82, 0.85)}
REPORTED_BASELINES = {"HOG": 0.84, "LBP": 0.60}  # test accuracy, the 2021 report's §6.8
# What the 2021 code did, each with the listing (or section) of the 2021 report it comes from.
DIFFERENCES_FROM_2021 = (
    "they ran each experiment once, one figure per experiment (here: every seed, mean and intervals)",
    "their 'best epoch' checkpoints were references to the live weights appended to a list (Listing 10), and "
    "getBestModel assigned best_model on every iteration (Listing 11), so they scored the last epoch",
    "trainNN called model.train() on the whole network every epoch (Listing 10; how layers were frozen is not "
    "listed), so the frozen trunk's BatchNorm statistics kept moving",
    "their normalisation statistics were taken on 0-255 pixels (Listing 5) and applied to 0-1 images (Listing 6)",
    "their stopping rule (Listing 10: validation loss above its running mean while training loss is below its "
    "own; es_rounds not given) let the SGD runs reach 400 epochs",
    "their validation and test loaders shuffled and nothing was seeded (§3.4, makeLoaders)",
)


def own_departures(s: Study) -> list[str]:
    """What this study does differently from the 2021 report's description, from its own record."""
    trials = s.trials
    values = lambda key: sorted({str(v) for v in trials[key].dropna()}) if key in trials else []  # noqa: E731
    return [
        f"normalization {', '.join(values('normalization')) or '—'} (facenet: facenet-pytorch's fixed "
        "standardization, what the pretrained trunk expects; the 2021 report describes the training images' "
        "mean/std: --normalization dataset)",
        f"stop rule {', '.join(values('stop_rule')) or '—'} (the 2021 rule is --stop-rule paper; its es_rounds "
        "is not given)",
        f"precision {'; '.join(sorted(set(s.configs.precision))) if len(s.configs) else '—'} as the trials "
        "recorded it (the 2021 report does not state its precision)",
        "train accuracy is scored with the evaluation transform (centre crop, no augmentation), as the 2021 "
        "train confusion matrices were, not on the augmented images the model trained on",
    ]


MAX_SHOWN = 12  # configurations drawn in the per-configuration figures


def title(doc: Document, s: Study) -> None:
    doc.h(f"Face-age study: {s.name}", 1)
    if len(s.trials) and not s.pretrained:
        doc.notice(RANDOM_INIT_NOTICE)


def search_notice(search: SearchRecord, confirmed: bool) -> str:
    """What a search's report stands on: one run per searched configuration, its best optimistic,
    and where the ranking comes from (its confirmation runs, or nothing confirmed)."""
    return (
        f"This study is a search ({search.kind}, {search.num_samples} trials over "
        f"{', '.join(search.searched)}): each searched trial is one configuration run once (one seed), "
        "and the best of them was kept because it scored high, so its validation score is optimistic. "
        + (
            "The ranking below uses only the confirmation runs (the best searched configurations again, with "
            "fresh seeds); the search runs are listed apart."
            if confirmed
            else "Nothing here is confirmed: rerun the best with --confirm-top K --confirm-seeds C."
        )
    )


def header(doc: Document, s: Study) -> None:
    """What ran and how its numbers are read: after the answer, before the tables."""
    counts = s.trials.status.value_counts() if len(s.trials) else pd.Series(dtype=int)
    sizes = ", ".join(f"{k} {v}" for k, v in s.record.split_sizes.items())
    if s.groups is not None:
        sizes += f"; the test images show {len(np.unique(s.groups))} people, the unit of every interval"
    search = s.record.search
    if search:  # the number of trials is the search's, or the confirmation's
        planned = "" if s.searched is not None else f" of {search.num_samples} planned"
        kind = "confirmation " if s.searched is not None else "searched "
    else:
        planned, kind = f" of {len(s.record.trials) or len(s.trials)} planned", ""
    doc.p(
        f"Grid {s.record.grid!r}: {len(s.configs)} configuration(s), {len(s.trials)} {kind}trial(s) recorded"
        f"{planned}; "
        + (", ".join(f"{n} {status}" for status, n in counts.items()) or "none started")
        + f". Data: {s.record.data_root} ({sizes}). Accuracies are each trial's best epoch's (lowest "
        "validation loss). '±' is the half-width of a 95% Student-t interval across seeds (training noise "
        "only); the full interval counts the test images' noise too (seed-and-image variance with "
        "Satterthwaite degrees of freedom, never narrower than the seeds-only one, leaning away from 0 and 1 "
        "as on the logit scale, clipped to [0, 1]; for one run, test-image noise only: Wilson for accuracy)."
    )
    key, mode = SELECTIONS[s.select]
    doc.p(
        f"Selection metric: {s.select} (--select; {'lowest' if mode == 'min' else 'highest'} first), the best "
        f"epoch's value so far as each trial reported it ({key}). Tune, the scheduler, the searcher, "
        "--confirm-top, best.json and this report's ranking all use it."
    )
    if search:
        doc.notice(search_notice(search, confirmed=s.searched is not None))
    if (counts.get("finished", 0)) == 0:
        doc.p(
            "Nothing has finished yet: no trial has final scores. The study is still running or was "
            "interrupted (continue it with `python -m study.run --resume`); this report shows what exists."
        )
    elif counts.get("unfinished", 0):
        doc.p(
            f"{counts['unfinished']} trial(s) have not finished (still running, or the study was "
            "interrupted): their configurations are left out of the ranking."
        )


def summary_section(doc: Document, s: Study) -> None:
    doc.h("Summary")
    doc.table(summary_table(s.configs, s.select), "summary ranking")
    doc.p("Each configuration's other settings, which its numbers depend on, and how its trials ran:")
    doc.table(settings_table(s.configs), "summary settings")
    ranked = s.ranked
    if len(ranked):
        best = ranked.iloc[0]
        doc.p(
            f"Ranking by the mean {s.select} over seeds (--select) uses only the {len(ranked)} configuration(s) "
            f"whose seeds all finished; first: #{best.experiment} {best['name']} ({s.select} {with_ci(*best.sel)}, "
            f"test acc {with_range(*best.test_full)}, the full 95% interval: training seeds and test images). "
            "Chosen on validation, never on test."
        )
    if s.confirmed is not None:
        doc.h("Confirmation: the best again, on fresh seeds", 3)
        doc.table(summary_table(s.confirmed, s.select), "confirmation")
        again = s.claimed
        doc.p(
            f"The best configuration rerun with seeds it was not chosen on (--confirm-top): #{again.experiment} "
            f"{again['name']}, test acc {with_range(*again.test_full)} (full 95% interval). Its comparisons with "
            "the baselines use these runs: the seeds that chose it score it too high (the winner's curse)."
            if again is not None
            else "The confirmation runs did not all finish: the best is not claimed against the baselines."
        )
    if s.best:
        doc.p(
            f"Best model kept: {BEST_DIR}/{MODEL_FILE} in the results directory, #{s.best['experiment']} "
            f"{s.best['name']} seed {s.best['model_seed']} ({s.select} {s.best['model_selected']:.3f}); "
            f"{BEST_DIR}/{BEST_FILE} says how it was chosen. Use it with python -m study.predict."
        )
    stopped = s.trials[s.trials.status == "stopped"]
    if len(stopped):
        doc.h("Stopped by ASHA", 3)
        doc.p(
            f"ASHA stopped these trials early on {s.select} (--select); they have no test score and their "
            "configurations are not ranked."
        )
        doc.table(
            pd.DataFrame(
                {
                    "#": stopped.experiment,
                    "name": stopped["name"],
                    "seed": stopped.seed,
                    "epoch reached": stopped.epochs,
                }
            ).sort_values(["#", "seed"])
        )


def search_section(doc: Document, s: Study) -> None:
    """A confirmed search's own runs, apart from the ranking."""
    trials, epochs = s.searched
    doc.h("Search runs (not used for the ranking)")
    doc.p(
        "Every searched trial, best validation accuracy first (at its best epoch so far, ASHA-stopped ones "
        "too). Optimistic: the confirmation runs above are the ones to compare."
    )
    points = explored(trials, epochs)
    table = pd.concat([trials[["trial_id", "status", "stopped_by", "epochs"]].reset_index(drop=True), points], axis=1)
    table = table.sort_values("val acc", ascending=False)
    doc.table(table.map(lambda v: f"{v:.3g}" if isinstance(v, float) else v))  # lr 6.2e-05 stays 6.2e-05


def exploration_section(doc: Document, s: Study, save) -> None:
    """What the explored hyperparameters did: parallel coordinates, importance, best so far."""

    trials, epochs = s.searched if s.searched is not None else (s.trials, s.epochs)
    points = explored(trials, epochs)
    if len(points) < 3 or len(points.columns) < 3:  # at least 3 trials and 2 varying hyperparameters
        return
    which = "searched trials" if s.record.search else "trials"
    doc.h("Exploring the hyperparameters")
    save(
        figures.parallel_coordinates(points),
        "parallel_coordinates.png",
        f"Each of the {len(points)} {which}, from its hyperparameters to its validation accuracy at its best epoch",
    )
    table, r2, folds = importance(points)
    doc.p(
        f"Hyperparameter importance, out of sample: permutation importance of a random forest (200 trees) "
        f"predicting validation accuracy from the hyperparameters, cross-validated over the {len(points)} {which} "
        f"in {folds} folds: each forest is scored only on the trials it was not fitted to, and a hyperparameter's "
        "importance is the drop in that held-out R² when its values are replaced by other trials' (20 times). "
        f"The forests' held-out R² is {r2:.2f}"
        + (": no better than predicting the mean, so these importances say nothing." if r2 <= 0 else ".")
    )
    doc.table(table)
    if s.fanova is not None:
        ranked, n = s.fanova
        doc.p(
            f"Optuna's fANOVA importance over the Optuna study's {n} completed trials (the study's optuna.journal; "
            f"the objective is what Tune told Optuna, the {s.select} value of a trial's last report). In-sample: "
            "the share of those trials' variance each hyperparameter explains, not a prediction for new trials."
        )
        doc.table(ranked)
    save(
        figures.best_so_far(epochs),
        "best_so_far.png",
        f"Best validation accuracy so far against trial-epochs spent, over the {which}",
    )


def balance_section(doc: Document, s: Study, btable: pd.DataFrame | None) -> None:
    doc.h("Classes: counts, balanced scores and recall per class")
    counts = pd.DataFrame(s.class_counts, index=s.classes).T
    shares = counts.div(counts.sum(axis=1), axis=0)
    doc.table(
        pd.DataFrame(
            {
                "split": counts.index,
                **{c: [f"{n} ({100 * f:.0f}%)" for n, f in zip(counts[c], shares[c], strict=True)] for c in s.classes},
                "images": counts.sum(axis=1),
            }
        ),
        "class counts",
    )
    largest = shares.loc["test"].max()
    has_peer = btable is not None and (btable.features == "pretrained").any()  # analysis.peer's record
    doc.p(
        f"Predicting the largest class for every test image scores accuracy {largest:.3f}, balanced accuracy "
        f"{1 / len(s.classes):.3f}. Balanced accuracy is the mean of the per-class recalls; macro-F1 the "
        "unweighted mean of per-class F1. Both are on the test images of the best epoch, with the same two "
        "intervals as accuracy (the full one with bootstrap image variances). "
        + ("A face the zero-shot peer did not find counts as wrong in every score. " if has_peer else "")
        + "Recall per class: the share of each class's test images predicted as that class, mean over runs."
    )
    table = balance_table(s.configs.head(MAX_SHOWN), btable, s.classes)
    if len(table):
        doc.table(table, "balanced scores and recall per class")


def baselines_section(doc: Document, s: Study) -> None:
    """Each baseline run: what its validation search covered and what it chose."""
    doc.h("Baselines: searched on validation, then refit on train")
    doc.p(
        "Each classical baseline's hyperparameters (and its features' own: HOG cell size, LBP settings) were "
        "chosen on the validation split alone, then the model was refit on the training images (with their "
        "mirrors) and scored once on test (python -m analysis.baselines)."
    )

    def show(settings: Any) -> str:  # floats to 4 significant digits: 'gamma 4.409e-05', not all 16
        if not isinstance(settings, dict):
            return "—"
        return "; ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items())

    rows = [
        {
            "baseline": r["name"],
            "seed": "—" if r.get("seed") is None else r["seed"],
            "val acc": f"{r['val_acc']:.3f}",
            "test acc": f"{r['test_acc']:.3f}",
            "searched": show(r.get("searched")),
            "chosen": show(r.get("params")),
        }
        for r in s.baselines
    ]
    doc.table(pd.DataFrame(rows))


def paper_section(doc: Document, s: Study, btable: pd.DataFrame | None) -> None:
    doc.h("Against the 2021 report")
    weights = set(s.trials.weights.dropna()) if len(s.trials) else set()
    if s.record.grid != "paper":
        doc.p(f"Left out: the 2021 figures are for the paper grid's seven experiments; this is grid {s.record.grid!r}.")
        return
    if weights != {"vggface2"}:
        doc.p(
            "Left out: the 2021 figures come from VGGFace2-pretrained weights; "
            f"this study's trials used {' and '.join(sorted(weights)) or 'no weights recorded'}."
        )
        return
    rows = []
    for number, (val, test) in REPORTED.items():
        match = s.ranked[s.ranked.experiment == number]
        ours = match.iloc[0] if len(match) else None
        rows.append(
            {
                "": f"#{number}",
                "reported val": val,
                "reported test": test,
                "ours val": with_ci(*ours.val) if ours is not None else "—",
                "ours test [full 95%]": with_range(*ours.test_full) if ours is not None else "—",
            }
        )
    for feats, course in REPORTED_BASELINES.items():
        ours = btable[btable.features == feats] if btable is not None else pd.DataFrame()
        best = ours.loc[ours.val_acc.str[0].idxmax()] if len(ours) else None
        rows.append(
            {
                "": f"{feats} baseline" + (f" ({best['name']})" if best is not None else ""),
                "reported val": "—",
                "reported test": f"{course} (§6.8)",
                "ours val": with_ci(*best.val_acc) if best is not None else "—",
                "ours test [full 95%]": with_range(*best.test_full) if best is not None else "—",
            }
        )
    doc.table(pd.DataFrame(rows))
    doc.p(
        "Ours: each configuration on the study's own runs, the seeds that ranked them (a description, not a "
        "test); the chosen one is set against its 2021 figure on the runs it was not chosen on, in The answer."
    )
    doc.p("Not like for like. What the 2021 code did: " + "; ".join(DIFFERENCES_FROM_2021) + ".")
    doc.p("And this study's own departures from the 2021 report: " + "; ".join(own_departures(s)) + ".")


@dataclass
class Verdicts:
    """Every comparison the report tests, one Holm family: the tests, their adjusted p-values and
    the level Holm tested each at (tables.comparison_table), and which compare the best with a baseline."""

    tests: list[tuple[str, str, Comparison]]
    adjusted: list[float]
    levels: list[float]
    table: pd.DataFrame
    against_baselines: list[int]


def comparison_pairs(s: Study, btable: pd.DataFrame | None) -> tuple[list[tuple[str, str, Any, Any]], int]:
    """(A name, B name, A row, B row) of every comparison, and how many of them (the last ones) set
    the best against a baseline. The best is always on runs that did not choose it (s.claimed: its
    confirmation runs) or not tested at all. Against experiment 1 (chosen in advance): every ranked
    configuration when the ranking has at most MAX_SHOWN (a family fixed before any result); when it
    has more, the ones shown were picked by the ranking itself, so only the best is tested."""
    ranked, best = s.ranked, s.claimed
    top = ranked.iloc[0].config_id if len(ranked) else None
    again = "" if best is None or s.searched is not None else f" (fresh seeds {', '.join(map(str, best.seed_list))})"
    pairs = []
    reference = ranked[ranked.experiment == 1] if len(ranked) else ranked
    if len(reference):
        ref = reference.iloc[0]
        rows = list(ranked.itertuples()) if len(ranked) <= MAX_SHOWN else []
        for c in rows:
            if c.config_id not in (ref.config_id, top):
                pairs.append((f"#{c.experiment} {c.name}", f"#{ref.experiment} {ref['name']}", c, ref))
        if best is not None and top != ref.config_id:
            pairs.append(
                (f"best #{best.experiment} {best['name']}{again}", f"#{ref.experiment} {ref['name']}", best, ref)
            )
    against = 0
    if best is not None and btable is not None:
        for _, group in btable.groupby("features", sort=False):
            b = group.loc[group.val_acc.str[0].idxmax()]
            pairs.append((f"best CNN #{best.experiment}{again}", b["name"], best, b))
            against += 1
    return pairs, against


def verdicts(s: Study, btable: pd.DataFrame | None) -> Verdicts | None:
    pairs, against = comparison_pairs(s, btable)
    if not pairs:
        return None
    tests = comparisons(pairs, s.labels, len(s.classes), PRIMARY_METRIC[s.select], s.groups)
    table, adjusted, levels = comparison_table(tests)
    return Verdicts(tests, adjusted, levels, table, list(range(len(tests) - against, len(tests))))


def baseline_row(found: Verdicts, i: int, metric: str) -> dict[str, str]:
    """The answer's row for test `i` of `found`, the chosen configuration against a baseline: the
    difference, its interval at Holm's level, the verdict and what it could have seen."""
    _, b, c = found.tests[i]
    p_holm, level = found.adjusted[i], found.levels[i]
    lo, hi = c.interval(level)
    if c.no_variance:
        verdict = "no test (zero variance)"
    elif p_holm < 0.05:
        verdict = f"{'better' if c.diff > 0 else 'worse'} (Holm {format_p(p_holm)})"
    else:
        verdict = f"not distinguishable from noise (Holm {format_p(p_holm)})"
    if c.deterministic[1]:
        runs = " (one run, deterministic)"
    else:
        runs = " (one run, its training noise unmeasured)" if c.runs[1] == 1 else f" ({c.runs[1]} runs)"
    return {
        "against": b + runs,
        f"difference in {metric} (points)": f"{100 * c.diff:+.1f}",
        "interval": f"{100 * lo:+.1f} to {100 * hi:+.1f} ({100 * (1 - level):.4g}%, Holm's level)",
        "verdict": verdict,
        "smallest difference it could see (80% power)": c.detectable_text(level),
    }


def verdict_section(doc: Document, s: Study, found: Verdicts | None) -> None:
    """The answer first: the chosen configuration, its confirmed score with the full interval, and
    against each baseline and the 2021 figure the difference, its interval, the verdict and the
    smallest difference this study could see; then the seeds (or test images) a question needs."""
    doc.h("The answer")
    best = s.claimed
    if best is None:
        doc.p(
            "No configuration is claimed. "
            + (unconfirmed_note(s) if len(s.ranked) else "No configuration has all its seeds finished and scored.")
        )
        return
    metric = PRIMARY_METRIC[s.select]
    runs = f"{len(best.seed_list)} run(s) it was not chosen on (seeds {', '.join(map(str, best.seed_list))})"
    tested = "" if metric == "accuracy" else f"; {metric}, the tested metric, {with_range(*best[f'{metric} full'])}"
    doc.p(
        f"Chosen: #{best.experiment} {best['name'].removeprefix('confirm ')}, by its mean {s.select} over seeds "
        "(validation, never test). "
        f"On {runs}: test accuracy {with_range(*best.test_full)} (95%, counting training seeds and test "
        f"images){tested}."
    )
    rows = [baseline_row(found, i, metric) for i in (found.against_baselines if found else [])]
    rows.extend(reported_row(s, best))
    if rows:
        doc.table(pd.DataFrame(rows))
    elif s.baselines is None:
        doc.p(
            "No baseline to compare with: compute them on the same split (python -m analysis.baselines) and "
            "pass --baselines."
        )
    if found and found.against_baselines:
        doc.p(seeds_needed(found.tests[found.against_baselines[0]], len(s.labels)))


def reported_row(s: Study, best: pd.Series) -> list[dict]:
    """The chosen configuration against the 2021 report's figure for its experiment: one number with
    no noise of its own, so the difference's interval is ours moved by it (95%, outside the Holm family)."""
    reported = REPORTED.get(int(best.experiment))
    if s.record.grid != "paper" or not s.pretrained or reported is None:
        return []
    mean, lo, hi = best.test_full
    half = (hi - lo) / 2
    inside = lo <= reported[1] <= hi
    return [
        {
            "against": f"the 2021 report's #{best.experiment} (test acc {reported[1]:.2f}, one run)",
            "difference in accuracy (points)": f"{100 * (mean - reported[1]):+.1f}",
            "interval": f"{100 * (lo - reported[1]):+.1f} to {100 * (hi - reported[1]):+.1f} (95%)",
            "verdict": "consistent with it" if inside else ("higher" if lo > reported[1] else "lower") + " than it",
            # a z-test's 80% power at 5%: (1.96 + 0.84) / 1.96 of the interval's half-width
            "smallest difference it could see (80% power)": f"about {100 * half * (1.96 + 0.84) / 1.96:.1f}",
        }
    ]


def seeds_needed(test: tuple[str, str, Comparison], n_images: int) -> str:
    """What the study's own variances say a question needs: seeds for a 5- and a 10-point difference
    (80% power at 5%, as one planned comparison), or where seeds cannot do it, test images."""
    a, b, c = test
    if not c.se > 0:
        return f"Seeds needed: not estimable against {b}: the comparison measured no variance."
    parts = []
    for points in (5, 10):
        seeds, images = c.plan(points / 100, n_images)
        if seeds is not None:
            parts.append(f"a {points}-point difference: {seeds} confirmation seeds")
        elif images is not None:
            parts.append(
                f"a {points}-point difference: no number of seeds on these {n_images} test images, whose own noise "
                f"is the floor; about {images:,} test images would do"
            )
    return (
        f"Seeds needed, from this study's own variances (its {c.runs[0]} seeds' spread and the {n_images} test "
        f"images'), for one planned test at 5% to find it 4 times in 5 (the Holm family above needs more): "
        f"against {b}, {'; '.join(parts)}. Set them with --confirm-seeds N."
    )


def comparisons_section(doc: Document, s: Study, found: Verdicts | None) -> None:
    doc.h("Is the difference real?")
    n_images = len(s.labels)
    lo, hi = accuracy_ci(int(0.8 * n_images), n_images)
    if len(s.ranked) and s.claimed is None:
        doc.p(unconfirmed_note(s))
    if len(s.ranked) > MAX_SHOWN:
        doc.p(
            f"The ranking's first {MAX_SHOWN} of {len(s.ranked)} configurations were picked by the ranking itself: "
            "testing them against #1 on the runs that ranked them would favour them (the winner's curse), so "
            "only the best is tested, on runs it was not chosen on; the others' numbers are descriptive."
        )
    if found is None:
        doc.p("No comparison: it needs finished configurations (and experiment 1, or baselines on the same split).")
        return
    metric = PRIMARY_METRIC[s.select]
    doc.p(
        f"{len(found.tests)} comparison(s), one per pair, on {metric} (the metric --select {s.select} ranks on: one "
        f"question, one test) on the same {n_images} test images, by the seed-and-image t-test; their p-values "
        f"are Holm-adjusted over all {len(found.tests)}, and 'different?' uses the adjusted p. Each interval is at "
        "the level Holm's step-down tested its comparison, so it excludes 0 exactly when the verdict is 'yes'; "
        "'detectable' is the smallest true difference the comparison finds with 80% power at that level and "
        "its own variance. A side with one run has no measured training noise unless it has none to measure "
        "(a deterministic baseline, the same model on every run); its row says which. With this many images one run's "
        f"accuracy is uncertain by about ±{100 * (hi - lo) / 2:.0f} points."
    )
    doc.p(descriptive_note(metric, s.class_counts.get("test")))
    if s.groups is not None:
        doc.p(people_note(s.groups))
    doc.p("Method: " + METHOD_NOTE)
    doc.table(found.table)
    for (a, b, test), p_holm, level in zip(found.tests, found.adjusted, found.levels, strict=True):
        doc.p(test.sentence(a, b, n_images, p_adjusted=p_holm, comparisons=len(found.tests), level=level))


def unconfirmed_note(s: Study) -> str:
    """Why the best configuration is not tested against the baselines."""
    rerun = "--confirm-top K --confirm-seeds C" if s.record.search else "--confirm-top 1 (the default for a grid)"
    return (
        "No test of the best configuration against the baselines: it was chosen on validation with the same "
        "seeds that would test it, which favours it (the winner's curse: among 7 identical configurations "
        "picked this way it beats an equal one 'significantly' in 6% of studies at a seed spread of 10 "
        "points, among 216 in 17%, against at most 5% on fresh seeds; python -m study.bench.calibration). Its "
        "numbers above are descriptive. "
        f"Rerun the study with {rerun} to claim it on fresh seeds."
    )


def people_note(groups: np.ndarray) -> str:
    """What a grouped test set's intervals count: people, not photos."""
    people = len(np.unique(groups))
    return (
        f"The test set holds {len(groups)} photos of {people} people (the split was grouped). Photos of one "
        f"person are not independent, so every interval and test in this report counts people as the unit: "
        f"cluster-robust image variances over the {people} people with {people - 1} degrees of freedom for "
        "the images (Liang & Zeger 1986; CR1, Cameron & Miller 2015), and bootstraps that resample whole people."
    )


def descriptive_note(metric: str, test_counts: list[int] | None) -> str:
    """What the untested scores are: the same number as accuracy on a balanced test split
    (said, not repeated), else descriptive only."""
    others = [m for m in ("accuracy", "balanced accuracy", "macro-F1") if m != metric]
    if test_counts and len(set(test_counts)) == 1:
        return (
            f"Every class has {test_counts[0]} test images, so balanced accuracy is accuracy here: one number, "
            "tested once. Macro-F1 is descriptive (the classes section), not tested."
        )
    listed = " and ".join(others)
    return f"{listed[0].upper()}{listed[1:]} are descriptive (the classes section), not tested."


def figures_section(doc: Document, s: Study, btable: pd.DataFrame | None, out_dir: str) -> None:
    import matplotlib.pyplot as plt

    directory = os.path.join(out_dir, "figures")
    os.makedirs(directory, exist_ok=True)

    def save(fig, name: str, caption: str) -> None:
        """The figure as PNG for the page and as SVG (vector, for a paper) beside it."""
        stem = name.removesuffix(".png")
        write_with(os.path.join(directory, name), lambda tmp: fig.savefig(tmp, dpi=150, format="png"))
        write_with(os.path.join(directory, stem + ".svg"), lambda tmp: fig.savefig(tmp, format="svg"))
        plt.close(fig)
        doc.figure(f"figures/{name}", f"{caption} (also figures/{stem}.svg)")

    shown = s.configs.head(MAX_SHOWN)
    doc.h("Figures")
    if (shown.scored > 0).any() or btable is not None:
        save(
            figures.accuracy_bars(shown[shown.scored > 0], btable),
            "test_accuracy.png",
            "Test accuracy, mean over seeds, 95% interval over seeds and test images",
        )
    if len(s.epochs):
        save(figures.loss_curves(s.epochs, s.trials, shown), "loss_curves.png", "Loss curves per configuration")
    if (shown.scored > 0).any():
        save(
            figures.confusion_matrices(s.trials, shown[shown.scored > 0], s.classes, s.class_counts["test"]),
            "confusion.png",
            "Test confusion matrix of each configuration over all its seeds: the share of each true class's "
            "images (rows sum to 1), the images summed over seeds in brackets",
        )
    if len(s.configs) >= 12:
        doc.h("Effect of each axis")
        fig, best_per_value = figures.axis_effects(s.configs, s.select)
        caption = f"Mean {s.select} (--select) of every configuration (ASHA-stopped ones at their best epoch so far)"
        save(fig, "axes.png", caption + ", by axis value")
        doc.p(
            f"Best configuration per axis value by {s.select}, as the study ranks: only configurations whose "
            "seeds all finished."
        )
        doc.table(best_per_value)
    exploration_section(doc, s, save)


def external_section(doc: Document, evaluations: list[str]) -> None:
    """'Beyond the training data': each evaluation (study.run --evaluate-on, analysis.evaluate)
    as a row with its intervals and per-class recall, then its confusion counts."""
    results = []
    for path in evaluations:
        with open(path) as f:
            results.append(json.load(f))
    doc.h("Beyond the training data")
    doc.p(
        "The best configuration's models (every seed, from study.run --evaluate-on; or one model, from "
        "python -m analysis.evaluate) scored on every image of other labelled datasets: all of it is test data, "
        "none of it was seen in training or model selection. Intervals are 95%: over the seeds and the images "
        "with several models, over the images alone with one; over people, not photos, where the dataset names "
        "who each photo shows (FG-NET: the images column says how many). A face the detector did not find counts as a "
        "wrong answer. The class shares differ from the training data's: compare balanced accuracy and recall, "
        "not accuracy alone, across datasets."
    )
    doc.table(pd.DataFrame([external_row(e) for e in results]))
    for e in results:
        runs = f", summed over {e['models']} models" if e.get("models", 1) > 1 else ""
        doc.h(f"Confusion on {e['data_root']} (counts{runs}; rows: true class)", 3)
        columns = [f"predicted {c}" for c in e["classes"]] + ["no face found"]
        counts = pd.DataFrame(e["confusion_counts"], columns=columns)
        doc.table(pd.concat([pd.DataFrame({"true": e["classes"]}), counts], axis=1))


def external_row(e: dict) -> dict:
    def interval(value: float | None, bounds: list | None) -> str:
        if value is None:
            return "n/a (no image)"
        return (
            f"{value:.3f} [one person: no interval]"
            if bounds is None
            else f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"
        )

    recall = zip(e["classes"], e["recall"], e["recall_interval_95"], strict=True)
    return {
        "data": e["data_root"],
        "layout": e["layout"] + (", faces detected" if e.get("detect_faces") else ""),
        "images": e["images"] if e.get("people") is None else f"{e['images']} of {e['people']} people",
        "class shares": ", ".join(f"{c} {p:.0%}" for c, p in zip(e["classes"], e["class_shares"], strict=True)),
        "faces not found (wrong)": e["faces_not_found"],
        "models": f"{e['models']} ({e['configuration']}, seeds {e['seeds']})" if "seeds" in e else e["models"],
        "accuracy [95%]": interval(e["accuracy"], e["accuracy_interval_95"]),
        "balanced accuracy [95%]": interval(e["balanced_accuracy"], e["balanced_accuracy_interval_95"]),
        "recall per class [95%]": "; ".join(f"{c} {interval(r, b)}" for c, r, b in recall),
        "macro-F1": f"{e['macro_f1']:.3f}",
    }


def provenance_section(doc: Document, s: Study) -> None:
    r = s.record
    doc.h("Provenance")
    doc.table(
        pd.DataFrame(
            [
                {"item": "command", "value": " ".join(r.command)},
                {"item": "git revision", "value": r.git_revision},
                {"item": "data fingerprint", "value": r.data_fingerprint},
                {"item": "split identity (test)", "value": r.split_id["test"]},
                {"item": "packages", "value": ", ".join(f"{k} {v}" for k, v in r.packages.items())},
                {"item": "python / platform", "value": f"{r.python} / {r.platform}"},
            ]
        )
    )
    for key, title in (
        ("skipped_files", "Files left out"),
        ("converted_files", "Images converted on load"),
        ("duplicate_files", "Duplicates within a split (kept)"),
    ):
        if getattr(r, key):
            doc.h(title, 3)
            doc.table(pd.DataFrame({"file: reason": getattr(r, key)}))
