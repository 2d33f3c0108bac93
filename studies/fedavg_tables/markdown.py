"""tableN.md and tableN.png: a table's report as markdown beside the paper's numbers, and its curves."""

from __future__ import annotations

from pathlib import Path

from ..tabular import Table
from .paper import CITATION, batch_text, frac_text, rounds_text
from .spec import FULL_BATCH_LRS, MINIBATCH_LRS, table2_row_keys

PARTITION_NAMES = {"iid": "IID", "shards": "non-IID (shards)"}


def _paper_text(row: dict, partition: str) -> str:
    if not row["paper_known"]:
        return "not in the paper"
    value = row["paper"].get(partition)
    return "— (not reached)" if value is None else str(value)


def table_view(report: dict) -> Table:
    """Ours beside the paper's, one line per row, a column group per partition.

    "ours / paper" is the ratio of rounds (">" where ours did not reach the target in the
    rounds it ran); the speed-up is the paper's: over FedSGD in Table 2, over C=0 (one client
    a round, same B) in Table 1, ours first ("—" when either did not reach the target).
    """
    cells = {(c["row"], c["partition"]): c for c in report["cells"]}
    head = ["row", "E", "B", "C"]
    for p in report["partitions"]:
        name = PARTITION_NAMES.get(p, p)
        head += [f"{name}: ours", "lr", "paper", "ours / paper", "speed-up"]
    rows = []
    for row in report["rows"]:
        out = [row["label"], str(row["epochs"]), batch_text(row["batch_size"]), frac_text(row["frac"])]
        for p in report["partitions"]:
            cell = cells.get((row["key"], p))
            out += [cell["verdict"], _lr_text(cell)] if cell else ["not run yet", ""]
            out += [_paper_text(row, p), _ratio_text(cell, row["paper"].get(p)), _speedup_text(report, row, p, cells)]
        rows.append(out)
    return Table.of(report["title"], head, rows)


def baseline_row(report: dict, row: dict) -> dict | None:
    """The row the paper's speed-ups are over: FedSGD in Table 2, C=0 with the same B in Table 1."""
    for other in report["rows"]:
        if report["table"] == 2 and other["key"] == "fedsgd":
            return other
        if report["table"] == 1 and other["batch_size"] == row["batch_size"] and other["frac"] == 0.0:
            return other
    return None


def ratio(cell: dict | None, paper: int | None) -> tuple[str, float] | None:
    """("=" or ">", ours / paper's rounds) for a finished cell the paper has a number for."""
    if cell is None or not paper:
        return None
    if cell["rounds_to_target"] is not None:
        return "=", cell["rounds_to_target"] / paper
    return ">", cell["rounds_done"] / paper


def _ratio_text(cell: dict | None, paper: int | None) -> str:
    found = ratio(cell, paper)
    if found is None:
        return ""
    sign, value = found
    return f"{'> ' if sign == '>' else ''}{value:.2f}"


def _speedup_text(report: dict, row: dict, partition: str, cells: dict) -> str:
    base = baseline_row(report, row)
    if base is None or base["key"] == row["key"]:
        return ""
    paper, paper_base = row["paper"].get(partition), base["paper"].get(partition)
    theirs = f"paper {paper_base / paper:.1f}x" if paper and paper_base else "paper —"
    cell, base_cell = cells.get((row["key"], partition)), cells.get((base["key"], partition))
    if cell is None or base_cell is None:
        return theirs
    if cell["rounds_to_target"] and base_cell["rounds_to_target"]:
        return f"{base_cell['rounds_to_target'] / cell['rounds_to_target']:.1f}x ({theirs})"
    return f"— ({theirs})"


def markdown_differences(report: dict) -> list[str]:
    """Finished cells more than 2x from the paper's rounds, or not reached, with what the report shows of them."""
    lines = []
    rows = {r["key"]: r for r in report["rows"]}
    for cell in report["cells"]:
        row = rows.get(cell["row"])
        found = ratio(cell, row["paper"].get(cell["partition"]) if row else None)
        if found is None or (found[0] == "=" and 0.5 <= found[1] <= 2):
            continue
        sign, value = found
        what = (
            f"{value:.2f}x the paper's rounds"
            if sign == "="
            else f"not reached in {rounds_text(cell['rounds_done'])} ({value:.2f}x the paper's), "
            f"best {cell['best_acc']:.4f}"
        )
        name = PARTITION_NAMES.get(cell["partition"], cell["partition"])
        lines.append(f"- {cell['label']}, {name}: {what}; lr {_lr_text(cell)}")
    return lines


def _lr_text(cell: dict) -> str:
    """The chosen rate, flagged when it lies at an end of the probed grid (the paper widened its grid then)."""
    probed = [p["lr"] for p in cell["probes"]]
    edge = len(probed) > 1 and cell["chosen_lr"] in (min(probed), max(probed))
    return f"{cell['chosen_lr']:.3g}" + (" (grid edge)" if edge else "")


def markdown_probes(report: dict) -> list[str]:
    """Every probe: accuracy (and loss) after its probe rounds, the chosen rate in bold."""
    lines = []
    for cell in report["cells"]:
        shown = []
        for p in cell["probes"]:
            text = f"lr {p['lr']:.3g}: {p['test_acc']:.4f} (loss {p['test_loss']:.3g})"
            if p["reached_at"] is not None:
                text += f", target at round {p['reached_at']}"
            shown.append(f"**{text}**" if p["lr"] == cell["chosen_lr"] else text)
        gave_up = "".join(
            f" Continued lr {d['lr']:.3g} diverged after {rounds_text(d['rounds_done'])} ({d['why']}); "
            "the next best went on."
            for d in cell.get("diverged", [])
        )
        lines.append(
            f"- {cell['label']}, {PARTITION_NAMES.get(cell['partition'], cell['partition'])}, after "
            f"{rounds_text(cell['probe_rounds'])}: " + "; ".join(shown) + gave_up
        )
    return lines


def _grids_text(report: dict) -> str:
    if report["lrs_override"]:
        return ", ".join(f"{lr:.3g}" for lr in report["lrs_override"]) + " (given with --lrs)"
    return (
        ", ".join(f"{lr:.3g}" for lr in MINIBATCH_LRS)
        + " for minibatch rows and "
        + ", ".join(f"{lr:.3g}" for lr in FULL_BATCH_LRS)
        + " for B=inf rows"
    )


def markdown_notes(report: dict) -> list[str]:
    """How the learning rates were chosen and what differs from the paper, from the report alone."""
    config = report["config"]
    probes = ", ".join(f"{PARTITION_NAMES.get(p, p)} {n}" for p, n in report["probe_rounds"].items())
    lines = [
        "## How the learning rate was chosen",
        "",
        "The paper trained each setting over a grid of typically 11-13 learning rates (multiplicative "
        "resolution 10^(1/3) or 10^(1/6)), checked that the best rates lay inside the grid, and reported the "
        f"best rate's curve. Here each cell probes {_grids_text(report)}, for a few rounds each ({probes}); "
        "the rate with the best test accuracy after its probe is kept (a probe that already reached the target "
        "wins; ties go to the lower test loss) and its run continues to the target or "
        f"{_budget_text(report)}. The probe rounds are the first rounds of the continued run. A short "
        "probe favours rates that start fast, which is not always the rate that reaches the target first. "
        '"(grid edge)" marks a chosen rate at an end of its grid, where the paper would have widened the grid: '
        "try `--lrs` with rates beyond it.",
        "",
        "## What differs from the paper",
        "",
        "- Rounds to target: the paper takes the best-so-far accuracy curve and interpolates linearly where it "
        "crosses the target; here it is the first round whose test accuracy reaches the target (the same "
        "crossing, in whole rounds). Test accuracy is measured on the test set after every round, as in the paper.",
        f"- One run per cell (seed {config['seed']}), with the rate from the short probe above instead of the "
        "best of a full grid.",
        "- Non-IID: the paper sorts the training set by label and cuts 200 shards of 300, two per client; here "
        "the shards are cut inside each label (in proportion to its examples), so no shard straddles two labels "
        "and every client holds at most two digits.",
        f"- Budget: a cell that does not reach the target within {_budget_text(report)} says so, with its "
        'best accuracy. The paper marks five large-batch runs of Table 1 as not reached "in the allowed time" '
        "(shown as —).",
        f"- Arithmetic: {_arithmetic(report)} on CPU; the paper does not state its own.",
        f"- Pixels: {_pixels(report)}; the paper does not say how it scaled them, and standardised inputs "
        "need fewer rounds (`--pixels` picks).",
    ]
    lines += _quick_check_notes(config) + _model_notes(report)
    return lines


def _budget_text(report: dict) -> str:
    """One budget, or the range where the study's cells were run with several (each verdict names its own)."""
    budgets = sorted({c["max_rounds"] for c in report["cells"]} or ({report["max_rounds"]} - {None}))
    if not budgets:
        return "the paper's rounds for the cell by half again"
    if len(budgets) == 1:
        return f"the budget of {budgets[0]} rounds"
    return f"its own budget ({budgets[0]} to {budgets[-1]} rounds; an unreached cell names the rounds it ran)"


def _executor_text(executor: dict) -> str:
    name = executor.get("name", "?")
    if name != "process":
        return name
    threads = executor["threads"]
    return f"process ({executor['workers']} workers x {threads} thread{'s' if threads != 1 else ''})"


def _pixels(report: dict) -> str:
    if report.get("pixels") == "unit":
        return "scaled to 0..1"
    return "standardised (mean and standard deviation of MNIST's training pixels)"


def _arithmetic(report: dict) -> str:
    text = "bf16 autocast with fp32 master weights" if report["precision"] == "bf16" else report["precision"]
    return text + (", channels-last convolutions" if report["channels_last"] else "")


def _quick_check_notes(config: dict) -> list[str]:
    limited = [f"K={config['clients']} clients (paper: 100)"] if config["clients"] != 100 else []
    if config.get("train_limit") is not None:
        limited.append(f"the first {config['train_limit']} training images (paper: 60,000)")
    if config.get("test_limit") is not None:
        limited.append(f"the first {config['test_limit']} test images (paper: 10,000)")
    return [f"- **Quick check only**: {', '.join(limited)}; not comparable with the paper."] if limited else []


def _model_notes(report: dict) -> list[str]:
    if report["table"] == 2:
        return [
            "- Rows: the paper's Table 2 has nine CNN rows; the others run with `--rows` "
            f"({', '.join(table2_row_keys())})."
        ]
    if report["model"] == "2nn":
        return [
            "- Table 1 is run here for the 2NN (E=1, to 97%), the default: the CNN version (`--model cnn`, "
            "E=5, to 99%) trains 100 clients x 5 local epochs (300 steps each) every round at C=1.0, for "
            "hundreds of rounds, which takes days on 2 cores."
        ]
    return [
        "- Table 1 for the CNN (E=5, to 99%): at C=1.0 every round trains all 100 clients for 5 epochs; "
        "expect days on 2 cores for the whole table."
    ]


def markdown(report: dict) -> str:
    """tableN.md: the table, the probes, and the notes; written from the JSON report alone."""
    config = report["config"]
    done, total = len(report["cells"]), len(report["rows"]) * len(report["partitions"])
    used = {_executor_text(c.get("executor") or report.get("executor") or {}) for c in report["cells"]}
    where = " and ".join(sorted(used or {_executor_text(report.get("executor") or {})}))
    lines = [
        f"# {report['title']}",
        "",
        f"Ours beside the paper's: {CITATION}, Table {report['table']}. Rounds to "
        f"{report['target']:.0%} test accuracy; K={config['clients']}, seed {config['seed']}, executor {where}, "
        f"{_arithmetic(report)}. {done} of {total} cells done (updated {report['updated_at']}).",
        "",
    ]
    lines += table_view(report).markdown(titled=False)
    differences = markdown_differences(report)
    if differences:
        lines += ["", "## Cells more than 2x from the paper's rounds, or not reached by half again", ""]
        lines += differences
    if report["cells"]:
        lines += ["", "## Learning-rate probes (test accuracy after the probe; chosen in bold)", ""]
        lines += markdown_probes(report)
    lines += [""] + markdown_notes(report)
    return "\n".join(lines) + "\n"


def plot_table(report: dict, path: Path) -> Path:
    """Test accuracy per round of every finished cell's chosen rate, with the target line."""
    from ..figures import plot_curves

    curves = {
        f"{c['label']}, {PARTITION_NAMES.get(c['partition'], c['partition'])}, lr {c['chosen_lr']:.3g}": c["accuracy"]
        for c in report["cells"]
    }
    return plot_curves(
        curves,
        path,
        title=report["title"].split(":")[0] + f": MNIST {report['model'].upper()}",
        target=report["target"],
    )


def console_view(report: dict) -> list[Table]:
    """The finished cells in short, for the terminal; the whole story is tableN.md."""
    return [
        Table.of(
            f"{report['title']} (paper: McMahan et al. 2017)",
            ["row", "partition", "ours", "lr", "paper", "s/round"],
            [
                (
                    c["label"],
                    c["partition"],
                    c["verdict"],
                    f"{c['chosen_lr']:.3g}",
                    c["paper_rounds"] if c["paper_rounds"] is not None else "-",
                    f"{c['mean_round_s']:.2f}",
                )
                for c in report["cells"]
            ],
        )
    ]
