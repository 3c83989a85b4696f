"""SAE traces to stream beats: input spike (or multi-bit value) beats and the address events they
encode to."""

import numpy as np

from sw.export import random_sae_inputs

__all__ = ["sae_input_beats", "sae_expected_events", "sae_output_arrays", "sae_expected_beats",
           "random_sae_inputs"]


def _beats_of_frame(config, frame):
    """(row, col, group, values of the beat) in stream order for one frame (C_in, H, W)."""
    lanes, groups = config.in_lanes, config.in_beats_per_pixel
    dtype = np.uint8 if config.in_bits == 1 else np.int64
    padded = np.zeros((groups * lanes, config.height, config.width), dtype=dtype)
    padded[: config.in_channels] = frame
    for r in range(config.height):
        for c in range(config.width):
            for g in range(groups):
                yield r, c, g, padded[g * lanes:(g + 1) * lanes, r, c]


def sae_input_beats(config, spikes):
    """Input beats (field dicts) for spikes (with `in_bits > 1`: integer values) of shape
    (frames, C_in, H, W)."""
    out = []
    name = config.input_fields()[0].name
    last_beat = config.height * config.width * config.in_beats_per_pixel - 1
    for frame in np.asarray(spikes):
        for n, (_, _, _, values) in enumerate(_beats_of_frame(config, frame)):
            out.append({name: [int(v) for v in values], "first": int(n == 0),
                        "last": int(n == last_beat)})
    return out


def sae_expected_events(config, spikes):
    """The address events of `SpikeEncoder` for spikes (frames, C_in, H, W): one per spike in
    stream order, the frame's last marked `last`; a frame whose last beat has no spike ends with
    a token (spike 0, channel 0) at its last pixel.

    With `in_bits > 1`: one event per set bit of each value's magnitude, a beat's events in the
    encoder's scan order, bit index `plane * in_lanes + lane` ascending (plane 0 lanes
    ascending, then plane 1, ...), each with its `plane` and (signed inputs) `neg`."""
    lanes, multi = config.in_lanes, config.in_bits > 1
    out = []
    for frame in np.asarray(spikes):
        events = []
        beats = list(_beats_of_frame(config, frame))
        for r, c, g, values in beats:
            magnitude = np.abs(values.astype(np.int64))
            bits = (magnitude[None, :] >> np.arange(config.in_bits)[:, None]) & 1
            for index in np.flatnonzero(bits):
                plane, lane = divmod(int(index), lanes)
                event = {"row": r, "col": c, "channel": g * lanes + lane, "group": g,
                         "lane": lane}
                if multi:
                    event["plane"] = plane
                    if config.in_signed:
                        event["neg"] = int(values[lane] < 0)
                events.append({**event, "spike": 1, "last": 0})
        if beats[-1][3].any():
            events[-1]["last"] = 1
        else:
            token = {"row": config.height - 1, "col": config.width - 1, "channel": 0,
                     "group": 0, "lane": 0}
            if multi:
                token["plane"] = 0
                if config.in_signed:
                    token["neg"] = 0
            events.append({**token, "spike": 0, "last": 1})
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
