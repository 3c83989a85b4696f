"""Pictures of a run on the overlay core (matplotlib, PNG, no display needed): where a person
would rather look than read a table.

- `cycles_per_layer`: per operation, the measured cycles (mean over the images) against the
  cycle model and the bound, on a log scale, with measured / bound beside each bar;
- `firing_rates`: per operation with spike outputs, the share of neurons that fire;
- `rasters`: per operation with spike outputs, one image's spikes (channels down, tokens
  across, timesteps one after another), the integer model's and the RTL's side by side.

Each writes its PNG atomically (`spec.yamlio.atomic_write_png`) and returns the path.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from spec.yamlio import atomic_write_png  # noqa: E402

__all__ = ["cycles_per_layer", "firing_rates", "rasters"]

def _save(fig, path):
    try:
        atomic_write_png(path, fig)
    finally:
        plt.close(fig)
    return Path(path)


def cycles_per_layer(names, measured, model, bound, path, *, title=""):
    """A horizontal bar chart: per operation (`names`, top to bottom in program order) the
    measured cycles, the cycle model's and the bound (three sequences of the same length)."""
    n = len(names)
    if not n or not len(measured) == len(model) == len(bound) == n:
        raise ValueError("cycles_per_layer needs one measured, model and bound figure per "
                         "operation")
    y = np.arange(n)
    fig, ax = plt.subplots(figsize=(9, 0.42 * n + 1.6))
    h = 0.27
    ax.barh(y - h, measured, h, label="measured (mean)", color="#1f77b4")
    ax.barh(y, model, h, label="cycle model", color="#ff7f0e")
    ax.barh(y + h, bound, h, label="bound", color="#7f7f7f")
    for k in range(n):
        if bound[k]:
            ax.text(max(measured[k], model[k], bound[k]) * 1.15, y[k],
                    f"{measured[k] / bound[k]:.2f} x", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(right=max(max(measured), max(model), max(bound)) * 4)
    ax.set_xlabel("cycles (log scale); measured / bound at the right")
    ax.set_title(title or "cycles per operation")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.tight_layout()
    return _save(fig, path)


def firing_rates(names, rates, path, *, title=""):
    """A horizontal bar chart of the share of neurons that fire (0 to 1), per operation."""
    if len(names) != len(rates) or not len(names):
        raise ValueError("firing_rates needs one rate per operation")
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.4))
    ax.barh(y, rates, color="#2ca02c")
    for k, r in enumerate(rates):
        ax.text(r + 0.005, y[k], f"{r:.1%}", va="center", fontsize=8)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(0.1, max(rates) * 1.25))
    ax.set_xlabel("firing rate (spikes per neuron and timestep)")
    ax.set_title(title or "firing rate per operation")
    ax.grid(axis="x", alpha=0.25)
    fig.tight_layout()
    return _save(fig, path)


def _raster(plane):
    """(T, C, H, W) spikes -> a (C, T * H * W) image: channels down, tokens across."""
    t, c = plane.shape[:2]
    return np.moveaxis(plane.reshape(t, c, -1), 0, 1).reshape(c, -1)


def rasters(names, model, rtl, path, *, title=""):
    """One row per operation: the integer model's spikes (`model`, a (T, C, H, W) array per
    name) and the RTL's (`rtl`, the same shapes, or None for a model-only picture) side by
    side; a panel's title counts its spikes."""
    if not names or len(model) != len(names) or (rtl is not None and len(rtl) != len(names)):
        raise ValueError("rasters needs one spike array per operation (and per side)")
    cols = 1 if rtl is None else 2
    fig, axes = plt.subplots(len(names), cols, figsize=(5.5 * cols, 1.9 * len(names) + 0.8),
                             squeeze=False)
    for k, name in enumerate(names):
        sides = [("integer model", model[k])] + ([] if rtl is None else [("RTL", rtl[k])])
        for j, (side, plane) in enumerate(sides):
            plane = np.asarray(plane)
            if plane.ndim != 4:
                raise ValueError(f"{name}: spikes must be (T, C, H, W), not {plane.shape}")
            ax = axes[k][j]
            ax.imshow(_raster(plane) != 0, aspect="auto", interpolation="nearest",
                      cmap="Greys")
            ax.set_title(f"{name}: {side}, {int(np.count_nonzero(plane)):,} spikes",
                         fontsize=8)
            ax.set_ylabel("channel", fontsize=7)
            ax.tick_params(labelsize=6)
        axes[k][0].set_xlabel("token (timesteps one after another)", fontsize=7)
    fig.suptitle(title or "spikes of one image", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / (1.9 * len(names) + 0.8)))
    return _save(fig, path)
