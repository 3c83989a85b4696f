"""A network bundle as stream beats: pixel input beats, each layer's expected output stream (for
the taps of `hw.network.Network`), the head's expected class accumulations, and scores."""

import numpy as np

from spec.ports import pack, payload_width, unpack

from .harness import run_stream
from .sae import sae_input_beats
from .scoreboard import Expected, Scoreboard, ScoreboardMismatch
from .shortcut import shortcut_beats

__all__ = ["NetworkStreams", "TapMonitor", "run_in_harness"]


class NetworkStreams:
    """Beats of a network bundle for the hardware `hw.network.Network` of the same network.

    Parameters
    ----------
    hw : hw.network.Network
    net : sw.int_model.IntNetwork
    bundle : spec.bundle.Bundle
        The network bundle (`unit: network`) with its traces.
    samples : int or None
        How many of the bundle's images to use (all when None).
    """

    def __init__(self, hw, net, bundle, samples=None):
        self.net = net
        self.timesteps = net.timesteps
        self.pixels = np.asarray(bundle.array("pixels"))[:samples]
        self.samples = len(self.pixels)
        self.labels = (np.asarray(bundle.array("labels"))[:samples]
                       if "labels" in bundle.arrays else None)
        self.scores = np.asarray(bundle.array("scores"))[:samples]
        self.in_config = hw.layers[0].units["sae"][0]
        self.out_config = hw.head.units["fc_sae"][0]
        self.layer_names = [layer.name for layer in net.layers]
        self.stream_configs = [_stream_config(layer) for layer in hw.layers]
        self.streams = [np.asarray(bundle.array(f"trace/{name}:stream"))[:samples]
                        for name in self.layer_names]
        self.head_acc = np.asarray(bundle.array("trace/head:outputs"))[:samples]

    def _frames(self, a):
        return a.reshape(-1, *a.shape[2:])

    def input_beats(self):
        frames = np.repeat(self.pixels[:, None], self.timesteps, axis=1)
        return sae_input_beats(self.in_config, self._frames(frames))

    def _where(self, frame):
        return {"sample": frame // self.timesteps, "timestep": frame % self.timesteps}

    def tap_expected(self, n):
        """Expected beats of layer n's output stream."""
        cfg = self.stream_configs[n]
        out = []
        for k, beat in enumerate(shortcut_beats(cfg, self._frames(self.streams[n]), "x")):
            f, rest = divmod(k, cfg.frame_words)
            pixel, g = divmod(rest, cfg.groups)
            out.append(Expected(beat, where={**self._where(f), "row": pixel // cfg.width,
                                             "col": pixel % cfg.width},
                                lane_name="channel", lane_base=g * cfg.lanes))
        return out

    def output_expected(self):
        """Expected beats of the head's class accumulations, one frame per timestep."""
        cfg = self.out_config
        acc = self._frames(self.head_acc)
        lanes, groups = cfg.lanes, cfg.out_groups
        padded = np.zeros((acc.shape[0], groups * lanes), np.int64)
        padded[:, :cfg.out_channels] = acc.reshape(acc.shape[0], -1)
        return [Expected({"acc": padded[f, g * lanes:(g + 1) * lanes].tolist(),
                          "first": int(g == 0), "last": int(g == groups - 1)},
                         where=self._where(f), lane_name="class", lane_base=g * lanes)
                for f in range(acc.shape[0]) for g in range(groups)]

    def scores_of(self, beats):
        """Class scores (samples, classes) from output beats: summed over timesteps."""
        cfg = self.out_config
        acc = np.array([b["acc"] for b in beats], np.int64)
        acc = acc.reshape(-1, self.timesteps, cfg.out_groups * cfg.lanes)[..., :cfg.out_channels]
        return acc.sum(axis=1)


def _stream_config(layer):
    """The ShortcutConfig of a layer's output stream."""
    units = layer.units
    for name in ("conv2_shortcut", "fc2_shortcut", "shortcut"):
        if name in units:
            return units[name][0]
    raise ValueError(f"layer has no output shortcut: {sorted(units)}")


class TapMonitor:
    """Checks the beats of tap `t<n>` of a `Network` (taken whenever `fire` is high) against a
    scoreboard; a part for `sim.streams.run_cycles`."""

    def __init__(self, dut, n, name, fields, expected):
        from spec.ports import unpack

        self._unpack = unpack
        self.fire = getattr(dut, f"t{n}__fire")
        self.data = getattr(dut, f"t{n}__data")
        self.fields = fields
        self.scoreboard = Scoreboard(name, expected)

    def drive(self):
        pass

    def wait_signals(self):
        return [self.fire]

    def sample(self, cycle):
        if self.fire.value:
            self.scoreboard.check(self._unpack(self.fields, self.data.value.to_unsigned()),
                                  cycle)


def _sae_piece(layer, unit):
    """The integer-model convolution behind engine `unit` of `layer`."""
    from sw.int_model import IntHead, Producer

    if isinstance(layer, IntHead):
        return layer.fc
    name = unit[:-len("_sae")] if unit.endswith("_sae") else "producer"
    piece = getattr(layer, name, None)
    if piece is None:
        piece = getattr(layer, f"{name}_conv")
    return piece.conv if isinstance(piece, Producer) else piece


def ideal_costs(hw, net, bundle, samples=None):
    """{unit: its ideal event-driven cycles} for the bundle's first `samples` images, from the
    traces of the units' own inputs: an engine, the sum over its input events of ceil(outputs
    touched / lanes) plus its drain (`SAEConfig.ideal_cycles`); the attention unit, its two
    event passes (`SDSAConfig.ideal_cycles`); a LIF array, a shortcut and the token sum, one
    beat per cycle."""
    from hw.block import unit_config
    from spec.lif import LIFConfig
    from spec.sae import SAEConfig
    from spec.sdsa import SDSAConfig
    from spec.shortcut import ShortcutConfig
    from spec.tokensum import TokenSumConfig

    def trace(name, kind):
        return np.asarray(bundle.array(f"trace/{name}:{kind}"))[:samples]

    n = len(np.asarray(bundle.array("pixels"))[:samples])
    frames = n * net.timesteps
    costs = {}
    for layer, part in [*zip(net.layers, hw.layers, strict=True), (net.head, hw.head)]:
        for name, unit in part.units.items():
            cfg = unit_config(unit)
            key = f"{layer.name}.{name}"
            if isinstance(cfg, SAEConfig):
                inputs = trace(_sae_piece(layer, name).name, "inputs")
                costs[key] = cfg.ideal_cycles(inputs.reshape(-1, *inputs.shape[2:]))
            elif isinstance(cfg, SDSAConfig):
                q, k, v = (trace(f"{layer.name}.attn.sdsa", x) for x in "qkv")
                costs[key] = cfg.ideal_cycles(q, k, v)
            elif isinstance(cfg, LIFConfig):
                costs[key] = cfg.ideal_cycles(n)
            elif isinstance(cfg, ShortcutConfig):
                costs[key] = cfg.frame_words * frames
            elif isinstance(cfg, TokenSumConfig):
                costs[key] = cfg.tokens * cfg.groups * frames
    return costs


def run_in_harness(hw, net, bundle, binary, taps, *, samples=None, in_pause=0.0, out_pause=0.0,
                   seed=1, waves=None, waves_window=None, corrupt=None):
    """Stream the bundle's images through the spatial network `hw` in the compiled harness
    `binary` (`sim.harness.build_stream` of `hw`'s Verilog; `taps` as it returns them): every
    class accumulation checked, and every layer's output stream when `hw` has taps, by the
    cocotb bench's scoreboards (a `ScoreboardMismatch` names the layer, the beat's place and its
    cycle); the scores must equal the bundle's. `corrupt(n, expected)` may alter tap n's
    expected beats (the can-fail check). Returns a dict of the figures."""
    streams = NetworkStreams(hw, net, bundle, samples)
    in_fields = streams.in_config.input_fields()
    out_fields = streams.out_config.output_fields()
    beats = [pack(in_fields, b) for b in streams.input_beats()]
    expected = streams.output_expected()
    report, out, tapped = run_stream(
        binary, beats, payload_width(in_fields), payload_width(out_fields), expect=len(expected),
        taps=taps, in_pause=in_pause, out_pause=out_pause, seed=seed, waves=waves,
        waves_window=waves_window)
    for n, beats_n in sorted(tapped.items()):
        expected_n = streams.tap_expected(n)
        if corrupt is not None:
            corrupt(n, expected_n)
        board = Scoreboard(streams.layer_names[n], expected_n)
        fields = streams.stream_configs[n].stream_fields()
        for cycle, word in beats_n:
            board.check(unpack(fields, word), cycle)
        board.check_done()
    board = Scoreboard("network output", expected)
    values = []
    for cycle, word in out:
        values.append(unpack(out_fields, word))
        board.check(values[-1], cycle)
    board.check_done()
    if report["ended"] != "expected beats":
        raise ScoreboardMismatch(f"network output: {board.pending} beats still expected after "
                                 f"{report['cycles']} cycles")
    scores = streams.scores_of(values)
    np.testing.assert_array_equal(scores, streams.scores)
    return {"samples": streams.samples, "timesteps": streams.timesteps,
            "measured_cycles": report["last_out"] - report["first_in"] + 1,
            "simulated_cycles": report["cycles"], "seconds": report["seconds"],
            "rtl_predictions": scores.argmax(axis=1).tolist(),
            "int_predictions": streams.scores.argmax(axis=1).tolist()}
