"""Network and block bundles: a quantized integer network (or one block of it), its inputs and
every layer's reference traces, in the bundle format v1 (`unit: network` or `unit: block`).

`config.yaml` describes the layers (each piece tagged with its type: `Neuron`, `Conv`,
`MultiBitConv`, `Producer`, the block types, `SDSAConfig`), the widths and the quantizer's
settings; `arrays.npz` holds every integer parameter as `<layer>:weight`, `<layer>:bias`,
`<layer>:shift`, `<layer>:stream_bias`, and the traces as `<layer>:<kind>` under a `trace/`
prefix (kinds: `inputs`, `spikes`, `membranes`, `outputs`, `stream`, `q`/`k`/`v`/`attention`,
`scores`). `encode`, `decode` and the reader are `spec.netbundle`'s; `read_network_bundle` here
rebuilds the runnable integer network (`sw.int_model`), which reproduces the traces (tests
check it). See docs/bundle-format.md.
"""

import numpy as np

from spec import netbundle as spec_netbundle
from spec.bundle import write_bundle
from spec.netbundle import encode

from .int_model import PIECES, IntNetwork, RunContext

__all__ = ["write_network_bundle", "read_network_bundle", "encode", "decode"]


def _trace_arrays(traces, names=None):
    out = {}
    for name, kinds in traces.items():
        if names is not None and not any(name == n or name.startswith(n + ".") for n in names):
            continue
        for kind, value in kinds.items():
            value = np.asarray(value)
            out[f"trace/{name}:{kind}"] = value.astype(np.uint8 if value.dtype == np.uint8
                                                       else np.int64)
    return out


def trace_arrays(net, pixels):
    """What a network bundle holds of a run, without writing one: the scores
    (`scores`) and every layer's traces (`trace/<name>:<kind>`) of `pixels` through `net`."""
    ctx = RunContext(net.widths, record="full")
    scores = net.run(pixels, ctx)
    return {"scores": scores.astype(np.int64), **_trace_arrays(ctx.merged_traces())}


def write_network_bundle(path, net, pixels, labels=None, *, block=None, model_config=None,
                         meta=None):
    """Run `pixels` through `net` with full traces and write a bundle.

    Without `block`: `unit: network`, the whole network, the pixels, labels and the scores.
    With `block` (a layer name such as "layers.3"): `unit: block`, that layer alone, its input
    stream (`trace/<block>:input`), its traces and its output stream. Returns the traces.
    """
    ctx = RunContext(net.widths, record="full")
    scores = net.run(pixels, ctx)
    traces = ctx.merged_traces()
    arrays = {}
    layer_names = [layer.name for layer in net.layers]
    config = {"timesteps": net.timesteps, "widths": dict(net.widths),
              "quantizer": {k: v for k, v in net.info.items() if k != "calibration"}}
    if model_config is not None:
        config["model"] = model_config
    if block is None:
        config.update(input_bits=net.input_bits, input_scale=net.input_scale,
                      layers=[encode(layer, arrays) for layer in net.layers],
                      head=encode(net.head, arrays))
        arrays["pixels"] = np.asarray(pixels, dtype=np.int64)
        if labels is not None:
            arrays["labels"] = np.asarray(labels, dtype=np.int64)
        arrays["scores"] = scores.astype(np.int64)
        arrays.update(_trace_arrays(traces))
        unit = "network"
    else:
        if block not in layer_names:
            raise ValueError(f"no layer {block!r} (layers: {', '.join(layer_names)})")
        n = layer_names.index(block)
        if n == 0:
            raise ValueError(f"{block!r} reads the pixels; export the network instead")
        layer = net.layers[n]
        config["layers"] = [encode(layer, arrays)]
        arrays["input"] = traces[layer_names[n - 1]]["stream"].astype(np.int64)
        arrays["output"] = traces[block]["stream"].astype(np.int64)
        arrays.update(_trace_arrays(traces, [block]))
        unit = "block"
    write_bundle(path, unit=unit, config=config, arrays=arrays,
                 meta={"generator": "sw.export", **(meta or {})})
    return traces


def decode(desc, arrays, where="layer"):
    """`spec.netbundle.decode` building the runnable pieces of `sw.int_model`."""
    return spec_netbundle.decode(desc, arrays, where, types=PIECES)


def read_network_bundle(path):
    """(unit, network or list of block layers, bundle) from a network or block bundle; the
    network's widths and settings restored, its pieces runnable (`spec.netbundle` reads it)."""
    return spec_netbundle.read_network_bundle(path, types=PIECES, network=IntNetwork)
