"""One workflow in Python, from a float model to RTL and an FPGA build, every step's artifacts
in one output folder:

    from flow import Flow

    flow = Flow("out/api", checkpoint="models/digits.pt")   # or Flow(out, model=a_model),
                                            # or Flow(out, nir="net.nir", timesteps=4)
    flow.quantize()                  # the integer network; float / integer accuracy
    flow.predict(images)             # class of each image on the integer model (= the RTL's)
    flow.generate("overlay")         # the core's Verilog and the network's program
    flow.cosimulate(images=4)        # those images on the RTL, every layer checked
    flow.build("ecp5-45k")           # Yosys + nextpnr: resources and Fmax (about 25 minutes)
    flow.report()                    # every step's figures, also in report.json

Each step runs the ones it needs first when they have not run (with their defaults), writes
its figures to `<out>/<step>.json` and returns them; the objects behind them are attributes
(`flow.model`, `flow.net`, `flow.program`, ...). The command lines (`sw.quant`, `gen.program`,
`sim.run`, `fpga.build`, ...) run the same functions; this is the layer that chains them.
"""

import json
import time
from pathlib import Path

import numpy as np
import torch

from fpga.build import build_component
from gen.program import compile_network, write_program
from gen.verilog import to_verilog
from hw.core import OverlayCore, check_config
from hw.network import Network
from sim.cosim import REPO_ROOT
from sim.harness import build_stream
from sim.network import run_in_harness
from sim.run import overlay_images
from spec.bundle import read_bundle
from spec.cli import UsageError
from spec.core import CoreConfig
from spec.yamlio import atomic_write_text
from sw.checkpoint import load_checkpoint
from sw.netbundle import read_network_bundle, write_network_bundle
from sw.nirio import DEFAULT_DT, NirError, load_chain, quantize_chain, report_chain
from sw.quant import QuantOptions, check_dataset_fit, quantize
from sw.train import load_dataset

__all__ = ["Flow", "FlowError", "STYLES", "check_predictions"]

#: what `Flow.generate` makes: the overlay core and a program, or one design per network
STYLES = ("overlay", "spatial")


class FlowError(ValueError):
    """A step asked for something it cannot do (one message naming it)."""


class Flow:
    """The flow of one model into the output folder `out` (made when a step writes).

    Parameters
    ----------
    out : str or Path
    checkpoint : path of a checkpoint `sw.train` wrote (validated before use, never unpickled
        beyond its tensors), or
    model : a `sw.model.MetaSpikeFormer` (in memory), or
    nir : a NIR graph of a spiking CNN (a `nir.NIRGraph` or the path of a .nir file; see
        `sw.nirio` for what imports), run at `timesteps` steps of `dt` seconds; with
    dataset : the data set its images and classes come from ("digits").
    core : the overlay core's `CoreConfig` (default: the default core).
    log : a function taking one line per step (default: silent).
    """

    def __init__(self, out, *, checkpoint=None, model=None, nir=None, timesteps=4, dt=DEFAULT_DT,
                 dataset="digits", core=None, log=None):
        if sum(x is not None for x in (checkpoint, model, nir)) != 1:
            raise FlowError("give one of a checkpoint, a model or a NIR graph")
        self.out = Path(out)
        self.core = core or CoreConfig()
        check_config(self.core)
        self.log = log or (lambda text: None)
        self.chain = self.model = None
        if nir is not None:
            try:
                self.chain = load_chain(nir, timesteps=timesteps, dt=dt, dataset=dataset)
            except NirError as exc:
                raise FlowError(str(exc)) from None
        elif checkpoint is not None:
            self.model, data = load_checkpoint(checkpoint)
            dataset = data.get("dataset", dataset)
        else:
            self.model = model.eval()
        self.dataset = dataset
        if self.model is not None:
            try:
                check_dataset_fit(self.model.config, dataset, str(checkpoint or "model"))
            except UsageError as exc:             # `fail` of the command lines: one message
                raise FlowError(str(exc)) from None
        self.net = None
        self.style = None
        self.results = {}
        self._data = None

    # -- helpers ---------------------------------------------------------------------------------

    @property
    def data(self):
        """(train images, train labels, test images, test labels) of the data set."""
        if self._data is None:
            self._data = load_dataset(self.dataset)
        return self._data

    def _save(self, step, figures):
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / f"{step}.json",
                          json.dumps(figures, indent=1, default=_plain) + "\n")
        self.results[step] = figures
        return figures

    def _images(self, images):
        """Float images (N, C, H, W) from a tensor, an array or a count of test images."""
        if isinstance(images, int):
            if not 1 <= images <= len(self.data[2]):
                raise FlowError(f"images must be 1 to {len(self.data[2])} test images, not "
                                f"{images}")
            return self.data[2][:images]
        x = torch.as_tensor(np.asarray(images), dtype=torch.float32)
        shape = tuple(self.data[2].shape[1:]) if self.chain is not None else (
            self.model.config.in_channels, self.model.config.image_size,
            self.model.config.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise FlowError(f"images must be (N, {', '.join(map(str, shape))}), not "
                            f"{tuple(x.shape)}")
        return x

    def _pixels(self, x):
        """The integer network's input for float images `x` (a NIR graph's own shape)."""
        return self.net.to_input(self.chain.images(x) if self.chain is not None else x)

    # -- the steps -------------------------------------------------------------------------------

    def quantize(self, *, calibration=512, options=None, test=True):
        """The integer network (`flow.net`), calibrated on the first `calibration` training
        images with `options` (`sw.quant.QuantOptions`); with `test`, float and integer
        accuracy on the test set (`python -m sw.quant` adds per-layer spike agreement and
        saturation counts). Writes quantize.json."""
        t0 = time.perf_counter()
        xtr = self.data[0][:calibration] if calibration else self.data[0]
        if self.chain is not None:
            try:
                self.net = quantize_chain(self.chain, xtr, options or QuantOptions())
            except NirError as exc:
                raise FlowError(str(exc)) from None
        else:
            self.net = quantize(self.model, xtr, options or QuantOptions())
        figures = {"calibration_images": len(xtr), "timesteps": self.net.timesteps,
                   "w_bits": self.net.info["w_bits"], "widths": dict(sorted(
                       self.net.widths.items()))}
        if test:
            xte, labels = self.data[2], self.data[3].numpy()
            if self.chain is not None:     # float by NIR's equations, spike agreement
                rep = report_chain(self.chain, self.net, xte, labels)
                figures.update({k: rep[k] for k in ("test_images", "float_accuracy",
                                                    "int_accuracy", "prediction_agreement")},
                               spike_agreement={r["layer"]: r["agreement"]
                                                for r in rep["layers"]})
            else:
                with torch.no_grad():
                    fpred = self.model(xte).argmax(1).numpy()
                ipred = self.predict(xte)
                figures.update(test_images=len(xte),
                               float_accuracy=float(np.mean(fpred == labels)),
                               int_accuracy=float(np.mean(ipred == labels)),
                               prediction_agreement=float(np.mean(fpred == ipred)))
            self.log(f"quantized: float {figures['float_accuracy']:.2%}, integer "
                     f"{figures['int_accuracy']:.2%} on {len(xte)} test images")
        figures["seconds"] = round(time.perf_counter() - t0, 1)
        return self._save("quantize", figures)

    def scores(self, images):
        """The integer model's class scores of `images` (float images, or a count of test
        images): what the RTL computes, bit for bit."""
        x = self._images(images)
        if self.net is None:
            self.quantize()
        return self.net.run(self._pixels(x))

    def predict(self, images):
        """The integer model's class of each of `images` (as `scores` takes them)."""
        return np.argmax(self.scores(images), axis=1)

    def generate(self, style="overlay"):
        """The hardware: "overlay", the overlay core's Verilog (`core.v`) and the network
        compiled into its program (`program/`: image.bin, layout.json); "spatial", the whole
        network as one design (`network.v`). Writes generate.json."""
        if style not in STYLES:
            raise FlowError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
        if self.net is None:
            self.quantize()
        t0 = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        if style == "overlay":
            self.program = compile_network(self.net, self.core)
            write_program(self.out / "program", self.program, None)
            verilog = to_verilog(OverlayCore(self.core), "overlay_core")
            path = self.out / "core.v"
            figures = {"ops": len(self.program.ops), "program_bytes": len(self.program.data),
                       "activation_bytes": self.program.activation_bytes,
                       "program": str(self.out / "program")}
        else:
            self.network = Network(self.net)
            verilog = to_verilog(self.network, "network")
            path = self.out / "network.v"
            figures = {"units": sum(len(layer.units)
                                    for layer in [*self.network.layers, self.network.head])}
        atomic_write_text(path, verilog)
        self.style = style
        figures.update(style=style, verilog=str(path), verilog_bytes=len(verilog),
                       seconds=round(time.perf_counter() - t0, 1))
        self.log(f"generated {style}: {path} ({len(verilog) / 1e6:.1f} MB)")
        return self._save("generate", figures)

    def cosimulate(self, images=4, *, pause=0.0, seed=1, build_root=None, harness=None):
        """Run `images` test images (a count) on the generated RTL in the compiled harness
        (Verilator) and check every layer's output (overlay) or every class accumulation
        (spatial) against the integer model; raises on the first divergence (`sim.run`'s
        RtlMismatch, or the scoreboard's). The harness is built (or found) in `build_root`
        (default build/harness, shared with `sim.run` and the demo), or `harness` is the
        binary of one already built for this core (`sim.harness.build_core`). Writes
        cosimulate.json."""
        if self.style is None:
            self.generate()
        x = self._images(images)
        labels = np.asarray(self.data[3][:len(x)])
        pixels = self._pixels(x)
        bundle_dir = self.out / "bundle"
        write_network_bundle(bundle_dir, self.net, pixels, labels)
        build_root = Path(build_root or REPO_ROOT / "build" / "harness")
        t0 = time.perf_counter()
        if self.style == "overlay":
            run = overlay_images(self.net, pixels, read_bundle(bundle_dir), self.out,
                                 core=self.core, build_root=build_root, pause=pause, seed=seed,
                                 binary=harness)
            rtl = [r["prediction"] for r in run["images"]]
            cycles = [r["cycles"] for r in run["images"]]
            figures = {"cycles_per_image": float(np.mean(cycles)),
                       "bound_per_image": sum(op["bound"] for op in run["cycle_report"]["ops"]),
                       "simulated_cycles": run["simulated_cycles"],
                       "simulation_seconds": run["simulation_seconds"]}
        else:
            _, net, bundle = read_network_bundle(bundle_dir)
            binary, taps = build_stream((self.out / "network.v").read_text(), "network",
                                        build_root)
            run = run_in_harness(self.network, net, bundle, binary, taps)
            rtl = list(run["rtl_predictions"])
            figures = {"cycles": run["measured_cycles"],
                       "simulated_cycles": run["simulated_cycles"],
                       "simulation_seconds": run["seconds"]}
        check_predictions(rtl, self.predict(x).tolist())
        figures.update(style=self.style, images=len(x), rtl_predictions=rtl,
                       rtl_accuracy=float(np.mean(np.asarray(rtl) == labels)),
                       seconds=round(time.perf_counter() - t0, 1))
        self.log(f"co-simulated {len(x)} images on the {self.style} RTL: equal to the integer "
                 f"model")
        return self._save("cosimulate", figures)

    def build(self, target="ecp5-45k", *, speed=6, seed=1):
        """Yosys and nextpnr on the generated design out of context (`fpga.build`): resources,
        Fmax at `speed`, the multiplier check. The overlay core takes about 25 minutes on the
        LFE5U-45F. Writes build.json (and fpga/report.json)."""
        if self.style is None:
            self.generate()
        if self.style == "overlay":
            component, design, config = OverlayCore(self.core), "core", self.core
        else:
            component, design = Network(self.net), "network"
            config = {"timesteps": self.net.timesteps, "layers": len(self.net.layers)}
        rep = build_component(component, design, config, target, out=self.out / "fpga",
                              speed=speed, seed=seed, log=self.log)
        figures = {k: rep[k] for k in ("design", "target", "speed_grade", "resources", "fmax",
                                       "multiplier_cells", "times")}
        return self._save("build", figures)

    def report(self):
        """Every step's figures so far (also written as report.json)."""
        return self._save("report", {"dataset": self.dataset, "core": self.core.to_dict(),
                                     **self.results})


def check_predictions(rtl, integer):
    """Raise `FlowError` unless the RTL's predicted classes equal the integer model's."""
    if list(rtl) != list(integer):
        raise FlowError(f"RTL predictions {list(rtl)} differ from the integer model's "
                        f"{list(integer)}")


def _plain(value):
    """JSON for numpy scalars and arrays."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")

