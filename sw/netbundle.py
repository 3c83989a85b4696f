"""Network and block bundles: a quantized integer network (or one block of it), its inputs and
every layer's reference traces, in the bundle format v1 (`unit: network` or `unit: block`).

`config.yaml` describes the layers (each piece tagged with its type: `Neuron`, `Conv`,
`MultiBitConv`, `Producer`, the block types, `SDSAConfig`), the widths and the quantizer's
settings; `arrays.npz` holds every integer parameter as `<layer>:weight`, `<layer>:bias`,
`<layer>:shift`, `<layer>:stream_bias`, and the traces as `<layer>:<kind>` under a `trace/`
prefix (kinds: `inputs`, `spikes`, `membranes`, `outputs`, `stream`, `q`/`k`/`v`/`attention`,
`scores`). `read_network_bundle` rebuilds the integer network, which reproduces the traces
(tests check it). See docs/bundle-format.md.
"""

from dataclasses import fields, is_dataclass

import numpy as np

from spec.bundle import read_bundle, write_bundle
from spec.errors import BundleError, ConfigError
from spec.sdsa import SDSAConfig

from .int_model import (
    Conv,
    IntConvBlock,
    IntDownsample,
    IntHead,
    IntNetwork,
    IntTransformerBlock,
    MultiBitConv,
    Neuron,
    Producer,
    RunContext,
    check_layers,
)

__all__ = ["write_network_bundle", "read_network_bundle", "encode", "decode"]

_TYPES = {cls.__name__: cls for cls in (Neuron, Conv, MultiBitConv, Producer, IntDownsample,
                                        IntConvBlock, IntTransformerBlock, IntHead)}


def encode(obj, arrays, owner=""):
    """A YAML-able description of an integer-network piece; its arrays go into `arrays`."""
    if obj is None:
        return None
    if isinstance(obj, SDSAConfig):
        return {"type": "SDSAConfig", **obj.to_dict()}
    if not is_dataclass(obj) or type(obj).__name__ not in _TYPES:
        raise TypeError(f"cannot encode a {type(obj).__name__}")
    name = getattr(obj, "name", None) or owner
    out = {"type": type(obj).__name__}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, np.ndarray):
            if isinstance(obj, Producer):
                key = f"{obj.conv.name}:{'stream_bias' if f.name == 'bias' else f.name}"
            else:
                key = f"{name}:{f.name}"
            arrays[key] = value.astype(np.int64)
            out[f.name] = {"array": key}
        elif is_dataclass(value) or isinstance(value, SDSAConfig):
            out[f.name] = encode(value, arrays, name)
        elif isinstance(value, tuple):
            out[f.name] = [float(v) for v in value]
        else:
            out[f.name] = value
    return out


def decode(desc, arrays, where="layer"):
    """The piece `encode` described, its arrays taken from `arrays`; `BundleError` when the
    description does not make sense."""
    if desc is None:
        return None
    if not isinstance(desc, dict) or "type" not in desc:
        raise BundleError(f"{where}: expected a mapping with a 'type'")
    kind = desc["type"]
    body = {k: v for k, v in desc.items() if k != "type"}
    try:
        if kind == "SDSAConfig":
            return SDSAConfig.from_dict(body)
        cls = _TYPES.get(kind)
        if cls is None:
            raise BundleError(f"{where}: unknown piece type {kind!r}")
        known = {f.name for f in fields(cls)}
        if set(body) != known:
            raise BundleError(f"{where}: a {kind} needs the keys {sorted(known)}, not "
                              f"{sorted(body)}")
        values = {}
        for key, value in body.items():
            if isinstance(value, dict) and set(value) == {"array"}:
                if value["array"] not in arrays:
                    raise BundleError(f"{where}: array {value['array']!r} is missing")
                values[key] = np.asarray(arrays[value["array"]], dtype=np.int64)
            elif isinstance(value, dict):
                values[key] = decode(value, arrays, f"{where}.{key}")
            elif isinstance(value, list):
                values[key] = tuple(float(v) for v in value)
            else:
                values[key] = value
        return cls(**values)
    except BundleError:
        raise
    except (TypeError, ValueError, ConfigError) as exc:
        raise BundleError(f"{where}: {exc}") from None


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


def read_network_bundle(path):
    """(unit, network or list of block layers, bundle) from a network or block bundle; the
    network's widths and settings restored."""
    bundle = read_bundle(path)
    if bundle.unit not in ("network", "block"):
        raise BundleError(f"bundle {bundle.source!r} holds a {bundle.unit!r} unit, not a "
                          f"network or block")
    cfg, src = bundle.config, bundle.source
    needed = ("timesteps", "widths", "layers") + (
        ("input_bits", "input_scale", "head") if bundle.unit == "network" else ())
    for key in needed:
        if cfg.get(key) is None:
            raise BundleError(f"bundle {src!r}: config.yaml has no {key!r}")
    if not isinstance(cfg["layers"], list) or not cfg["layers"]:
        raise BundleError(f"bundle {src!r}: 'layers' must be a non-empty list")
    widths = cfg["widths"]
    if not isinstance(widths, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 48
            for k, v in widths.items()):
        raise BundleError(f"bundle {src!r}: 'widths' must map names to widths of 2 to 48 bits")
    for key, kind in (("timesteps", int), ("input_bits", int), ("input_scale", (int, float))):
        value = cfg.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            raise BundleError(f"bundle {src!r}: {key!r} must be a positive number, not "
                              f"{value!r}")
    layers = [decode(d, bundle.arrays, f"bundle {src!r} layer {n}")
              for n, d in enumerate(cfg["layers"])]
    head = decode(cfg["head"], bundle.arrays, f"bundle {src!r} head") \
        if bundle.unit == "network" else None
    try:
        if bundle.unit == "block":
            check_layers(layers, widths, int(cfg["timesteps"]))
            return "block", layers, bundle
        net = IntNetwork(layers=layers, head=head, timesteps=int(cfg["timesteps"]),
                         input_bits=int(cfg["input_bits"]),
                         input_scale=float(cfg["input_scale"]), widths=dict(widths),
                         info=dict(cfg.get("quantizer") or {}))
        net.check()
    except BundleError:
        raise
    except (ConfigError, ValueError, TypeError) as exc:
        raise BundleError(f"bundle {src!r}: {exc}") from None
    return "network", net, bundle
