"""Training curves as PNG (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path

from relssl.objectives import reference_key


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display). Imported when a plot is drawn, not at the
    top of a module: 0.3 s at the start of every relssl command otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """One panel per metric <objective>/<metric>: train and validation against epoch, and the
    metric's trivial reference on the validation rows (dashed) where it has one. Per-column
    metrics (<objective>/<metric>/<column>) stay in metrics.jsonl."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    names = sorted({k for r in history for k in r if k.count("/") == 1 and not k.endswith("_ref")})
    if not names:
        return
    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    width, height = 4.2 * cols, 3.2 * rows
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    # Margins in inches rather than tight_layout, which draws the figure once more to measure it
    # (0.5 of a run's 1.3 s plotting); the room is for tick labels of up to 8 characters.
    fig.subplots_adjust(left=0.75 / width, right=1 - 0.15 / width, bottom=0.5 / height,
                        top=1 - 0.8 / height, wspace=0.3, hspace=0.45)
    for ax, name in zip(axes.flat, names):
        for split, key, style in (("train", name, "-o"), ("val", name, "-s"), ("val", reference_key(name), "--")):
            pts = [(r["epoch"], r[key]) for r in history if r["split"] == split and key in r]
            if pts:
                ax.plot(*zip(*pts), style, label=split if key == name else "reference", markersize=3,
                        **({"color": "grey"} if key != name else {}))
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
