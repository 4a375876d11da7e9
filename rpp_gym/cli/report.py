"""Reports: the paper-style comparison table (Markdown + CSV), evaluation JSON, and plots."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rpp_gym.evaluation import EvalResult
from rpp_gym.runs import write_json_atomic

__all__ = ["comparison_table", "plot_all", "write_comparison", "write_evaluation"]

COLUMNS = ("ndcg@1", "ndcg@5", "ndcg@10")


def result_record(res: EvalResult) -> dict[str, Any]:
    """Summary numbers of one evaluation, JSON-ready."""
    s = res.summary()
    return {
        "method": res.name,
        "users": len(res.user_ids),
        **{k: round(v, 6) for k, v in s.items()},
        "wall_s": round(res.wall_s, 3),
    }


def write_evaluation(res: EvalResult, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """``stem.json`` (summary + per-user NDCG@10) and ``stem.csv`` (one row per user)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    record = result_record(res)
    record["per_user_ndcg@10"] = dict(zip(res.user_ids, np.round(res.per_user("ndcg@10"), 6).tolist(), strict=True))
    json_path = out_dir / f"{stem}.json"
    write_json_atomic(json_path, record)
    csv_path = out_dir / f"{stem}.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        keys = list(res.metrics)
        w.writerow(["user_id", *keys, "parse_ok"])
        for i, u in enumerate(res.user_ids):
            w.writerow(
                [u, *(round(float(res.metrics[k][i].mean()), 6) for k in keys), round(float(res.parse_ok[i].mean()), 4)]
            )
    return json_path, csv_path


def comparison_table(rows: dict[str, dict[str, EvalResult]], llm_labels: dict[str, str]) -> str:
    """Markdown in the layout of the paper's main table: rows = methods, NDCG@1/5/10 per dataset.

    Args:
        rows: ``{method: {column group (e.g. env id): result}}``.
        llm_labels: ``{column group: which LLM produced it}`` (shown under the header).
    """
    groups = list(dict.fromkeys(g for per in rows.values() for g in per))
    head = "| method | " + " | ".join(f"{g} NDCG@{c.split('@')[1]}" for g in groups for c in COLUMNS) + " |"
    sep = "|---|" + "---:|" * (len(groups) * len(COLUMNS))
    best = {
        (g, c): max((per[g].summary()[c] for per in rows.values() if g in per), default=None)
        for g in groups
        for c in COLUMNS
    }
    lines = [head, sep]
    for method, per in rows.items():
        cells = []
        for g in groups:
            for c in COLUMNS:
                if g not in per:
                    cells.append("–")
                    continue
                v = per[g].summary()[c]
                cells.append(f"**{v:.4f}**" if best[(g, c)] is not None and v == best[(g, c)] else f"{v:.4f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    notes = [
        f"- `{g}`: {llm_labels.get(g, '?')}, {_users(rows, g)} test users, each user's mean over "
        f"{_rounds(rows, g)} rounds (traditional recommenders: one ranking per user, no LLM)"
        for g in groups
    ]
    return "\n".join(lines) + "\n\n" + "\n".join(notes) + "\n"


def _rounds(rows: dict[str, dict[str, EvalResult]], group: str) -> int:
    return max(per[group].metrics["ndcg@10"].shape[1] for per in rows.values() if group in per)


def _users(rows: dict[str, dict[str, EvalResult]], group: str) -> int:
    return max(len(per[group].user_ids) for per in rows.values() if group in per)


def write_comparison(
    rows: dict[str, dict[str, EvalResult]], llm_labels: dict[str, str], out_dir: Path
) -> dict[str, Path]:
    """``comparison.md``, ``comparison.csv`` and ``comparison.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "comparison.md"
    md.write_text(comparison_table(rows, llm_labels))
    records = [
        {"group": g, "llm": llm_labels.get(g, ""), **result_record(res)}
        for per in rows.values()
        for g, res in per.items()
    ]
    csv_path = out_dir / "comparison.csv"
    with csv_path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(records[0]))
        w.writeheader()
        w.writerows(records)
    json_path = out_dir / "comparison.json"
    write_json_atomic(json_path, records)
    return {"markdown": md, "csv": csv_path, "json": json_path}


def choice_shares(
    chosen: dict[str, npt.NDArray[np.int64]], sentences: Sequence[Any]
) -> tuple[list[str], dict[str, npt.NDArray[np.float64]]]:
    """Per method, the share of choices of each sentence of one pattern: ``(labels, shares)``.

    RPP+ runs act in bigger banks whose first slots hold these original sentences: every choice
    of a later slot (a rewrite) counts towards one extra ``"refined"`` label.

    >>> choice_shares({"a": np.array([0, 1, 1, 5])}, [type("S", (), {"id": i})() for i in ("x", "y")])
    (['x', 'y', 'refined'], {'a': array([0.25, 0.5 , 0.25])})
    """
    ids = [s.id for s in sentences]
    if any((np.asarray(c) >= len(ids)).any() for c in chosen.values()):
        ids.append("refined")
    shares = {}
    for name, c in chosen.items():
        counts = np.bincount(np.minimum(np.asarray(c).ravel(), len(ids) - 1), minlength=len(ids))
        shares[name] = counts / max(counts.sum(), 1)
    return ids, shares


def plot_all(
    results: dict[str, EvalResult],
    baseline: str | None,
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    bank: Any,
    out_dir: Path,
) -> list[Path]:
    """Learning curves, chosen-sentence distributions and per-user gains, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    if curves:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for name, (steps, values) in curves.items():
            vals = np.asarray(values, dtype=float)
            window = max(1, len(vals) // 50)
            smooth = np.convolve(vals, np.ones(window) / window, mode="valid")
            line = ax.plot(steps, vals, linewidth=0.6, alpha=0.25)[0]
            ax.plot(
                steps[window - 1 :],
                smooth,
                color=line.get_color(),
                linewidth=1.8,
                label=f"{name} (moving mean of {window} updates)",
            )
        for name, res in results.items():
            if name in ("best-fixed", "random", "oracle"):
                ax.axhline(
                    res.summary()["ndcg@10"],
                    linestyle="--",
                    linewidth=1,
                    label=f"{name} (test)",
                    color={"best-fixed": "tab:gray", "random": "tab:red", "oracle": "tab:green"}[name],
                )
        ax.set_xlabel("environment steps (user-rounds)")
        ax.set_ylabel("mean NDCG@10")
        ax.set_title("Learning curves (train users; dashed: test-set baselines)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        path = out_dir / "learning_curves.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    learned = {n: r for n, r in results.items() if r.actions.size and r.actions.shape[1] > 0}
    if learned and bank is not None:
        patterns = ("role", "reasoning", "format")
        fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
        width = 0.8 / max(len(learned), 1)
        for j, (ax, p) in enumerate(zip(axes, patterns, strict=True)):
            ids, shares = choice_shares({n: r.actions[:, :, j + 1] for n, r in learned.items()}, bank.sentences(p))
            for k, (name, share) in enumerate(shares.items()):
                ax.bar(np.arange(len(ids)) + k * width, share, width=width, label=name)
            ax.set_xticks(np.arange(len(ids)) + width * (len(learned) - 1) / 2)
            ax.set_xticklabels(ids, rotation=40, ha="right", fontsize=8)
            ax.set_title(f"{p} sentence chosen")
            ax.set_ylim(0, 1)
            ax.grid(axis="y", alpha=0.3)
        axes[0].set_ylabel("share of (user, round) choices")
        axes[-1].legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / "sentence_choices.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)

    if baseline and baseline in results:
        base = results[baseline]
        others = {
            n: r
            for n, r in results.items()
            if n != baseline and r.user_ids == base.user_ids and r.actions.size and r.actions.shape[1] > 0
        }
        if others:
            fig, ax = plt.subplots(figsize=(7, 4.2))
            bins = np.linspace(-0.6, 0.6, 41)
            for name, res in others.items():
                gain = res.per_user() - base.per_user()
                ax.hist(
                    gain,
                    bins=bins,
                    alpha=0.5,
                    label=f"{name} (mean {gain.mean():+.3f}, {(gain > 0).mean():.0%} of users gain)",
                )
            ax.axvline(0, color="k", linewidth=1)
            ax.set_xlabel(f"per-user NDCG@10 gain over {baseline}")
            ax.set_ylabel("users")
            ax.set_title(f"Per-user gains over the {baseline} prompt (test users)")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            path = out_dir / "per_user_gains.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            written.append(path)
    return written


def read_curve(run_dir: Path) -> tuple[list[float], list[float]] | None:
    """``(steps, eval or train reward)`` from a run's progress.csv, or None."""
    path = run_dir / "progress.csv"
    if not path.exists():
        return None
    steps, values = [], []
    with path.open() as f:
        for row in csv.DictReader(f):
            steps.append(float(row["steps"]))
            values.append(float(row["reward"]))
    return steps, values
