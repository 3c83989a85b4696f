"""Shortcut traces to stream beats: branch and residual input beats, expected output beats."""

import numpy as np

__all__ = ["shortcut_beats", "shortcut_input_beats", "shortcut_expected_beats",
           "shortcut_output_arrays"]


def shortcut_beats(config, values, field):
    """Beats (field dicts) of (frames, channels, H, W) values: per frame, pixels in raster order,
    `groups` beats of `lanes` channels each (padding lanes 0), `first`/`last` of a frame."""
    lanes, groups = config.lanes, config.groups
    a = np.asarray(values, dtype=np.int64)
    padded = np.zeros((a.shape[0], groups * lanes, config.height, config.width), np.int64)
    padded[:, : config.channels] = a
    words = padded.reshape(a.shape[0], groups, lanes, config.height, config.width)
    words = words.transpose(0, 3, 4, 1, 2).reshape(a.shape[0], config.frame_words, lanes)
    return [{field: w.tolist(), "first": int(n == 0), "last": int(n == config.frame_words - 1)}
            for frame in words for n, w in enumerate(frame)]


def shortcut_input_beats(config, traces):
    """{port: beats} of the inputs for `traces` (a `spec.shortcut.ShortcutTraces`)."""
    beats = {"branch": shortcut_beats(config, traces.acc, "acc")}
    if config.residual:
        beats["residual"] = shortcut_beats(config, traces.residual, "x")
    return beats


def shortcut_expected_beats(config, traces):
    """Expected output beats, each naming its frame, pixel and channels for the scoreboard."""
    from .scoreboard import Expected

    beats = shortcut_beats(config, traces.outputs, "x")
    out = []
    for n, beat in enumerate(beats):
        f, rest = divmod(n, config.frame_words)
        pixel, g = divmod(rest, config.groups)
        out.append(Expected(beat, where={"frame": f, "row": pixel // config.width,
                                         "col": pixel % config.width},
                            lane_name="channel", lane_base=g * config.lanes))
    return out


def shortcut_output_arrays(config, beats, frames):
    """Output beats back to (frames, channels, H, W)."""
    x = np.array([b["x"] for b in beats], dtype=np.int64)
    x = x.reshape(frames, config.height, config.width, -1)[..., : config.channels]
    return x.transpose(0, 3, 1, 2)
