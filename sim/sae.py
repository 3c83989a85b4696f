"""SAE traces to stream beats: input spike beats and the address events they encode to."""

import numpy as np

__all__ = ["sae_input_beats", "sae_expected_events", "sae_output_arrays", "sae_expected_beats"]


def _beats_of_frame(config, frame):
    """(row, col, group, spikes of the beat) in stream order for one frame (C_in, H, W)."""
    lanes, groups = config.in_lanes, config.in_beats_per_pixel
    padded = np.zeros((groups * lanes, config.height, config.width), dtype=np.uint8)
    padded[: config.in_channels] = frame
    for r in range(config.height):
        for c in range(config.width):
            for g in range(groups):
                yield r, c, g, padded[g * lanes:(g + 1) * lanes, r, c]


def sae_input_beats(config, spikes):
    """Input beats (field dicts) for spikes of shape (frames, C_in, H, W)."""
    out = []
    last_beat = config.height * config.width * config.in_beats_per_pixel - 1
    for frame in np.asarray(spikes):
        for n, (_, _, _, bits) in enumerate(_beats_of_frame(config, frame)):
            out.append({"spikes": bits.tolist(), "first": int(n == 0),
                        "last": int(n == last_beat)})
    return out


def sae_expected_events(config, spikes):
    """The address events of `SpikeEncoder` for spikes (frames, C_in, H, W): one per spike in
    stream order, the frame's last marked `last`; a frame whose last beat has no spike ends with
    a token (spike 0, channel 0) at its last pixel."""
    out = []
    for frame in np.asarray(spikes):
        events = []
        for r, c, g, bits in _beats_of_frame(config, frame):
            for j in np.flatnonzero(bits):
                events.append({"row": r, "col": c, "channel": g * config.in_lanes + int(j),
                               "group": g, "lane": int(j), "spike": 1, "last": 0})
        last_bits = list(_beats_of_frame(config, frame))[-1][3]
        if last_bits.any():
            events[-1]["last"] = 1
        else:
            events.append({"row": config.height - 1, "col": config.width - 1, "channel": 0,
                           "group": 0, "lane": 0, "spike": 0, "last": 1})
        out.extend(events)
    return out


def sae_output_arrays(config, beats, frames):
    """Output beats back to (frames, C_out, H_out, W_out)."""
    acc = np.array([b["acc"] for b in beats], dtype=np.int64)
    acc = acc.reshape(frames, config.out_height, config.out_width, -1)[..., : config.out_channels]
    return acc.transpose(0, 3, 1, 2)


def sae_expected_beats(config, traces):
    """Expected output beats for `traces` (a `spec.sae.SAETraces`): per frame, output pixels in
    raster order, `out_groups` beats of `lanes` accumulators each (padding lanes 0)."""
    from .scoreboard import Expected

    lanes, groups = config.lanes, config.out_groups
    out = np.zeros((traces.outputs.shape[0], groups * lanes, config.out_height,
                    config.out_width), dtype=np.int64)
    out[:, : config.out_channels] = traces.outputs
    beats = []
    n_beats = config.acc_words
    for f in range(out.shape[0]):
        n = 0
        for r in range(config.out_height):
            for c in range(config.out_width):
                for g in range(groups):
                    beats.append(Expected(
                        {"acc": out[f, g * lanes:(g + 1) * lanes, r, c].tolist(),
                         "first": int(n == 0), "last": int(n == n_beats - 1)},
                        where={"frame": f, "row": r, "col": c}, lane_name="channel",
                        lane_base=g * lanes))
                    n += 1
    return beats
