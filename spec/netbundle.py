"""Network and block bundles read and described: the integer network's pieces as YAML and arrays
(`encode`, `decode`), and `read_network_bundle`, in the bundle format v1 (`unit: network` or
`unit: block`). Writing one (with the traces a run of the network gives) is
`sw.netbundle.write_network_bundle`.

`config.yaml` describes the layers (each piece tagged with its class name: `Neuron`, `Conv`,
`MultiBitConv`, `Producer`, the block types, `SDSAConfig`), the widths and the quantizer's
settings; `arrays.npz` holds every integer parameter as `<layer>:weight`, `<layer>:bias`,
`<layer>:shift`, `<layer>:stream_bias` (and the traces, see `sw.netbundle`). Decoding builds
`spec.network`'s description classes unless given others of the same names (`sw.int_model`'s
runnable ones). See docs/bundle-format.md.
"""

from dataclasses import fields, is_dataclass

import numpy as np

from .bundle import read_bundle
from .errors import BundleError, ConfigError
from .network import (
    Conv,
    IntConvBlock,
    IntDownsample,
    IntHead,
    IntNetwork,
    IntTransformerBlock,
    MultiBitConv,
    Neuron,
    Producer,
    check_layers,
)
from .sdsa import SDSAConfig

__all__ = ["PIECES", "encode", "decode", "read_network_bundle"]

#: Keys added to a piece after bundles of format v1 were first written: a bundle without them
#: reads with the field's default (a `Neuron`'s leak `tau`, 2). Every other key is required.
LATER_KEYS = {"Neuron": {"tau"}}

#: The pieces a bundle describes, by their type tag (the class name).
PIECES = {cls.__name__: cls for cls in (Neuron, Conv, MultiBitConv, Producer, IntDownsample,
                                        IntConvBlock, IntTransformerBlock, IntHead)}


def encode(obj, arrays, owner=""):
    """A YAML-able description of an integer-network piece; its arrays go into `arrays`."""
    if obj is None:
        return None
    if isinstance(obj, SDSAConfig):
        return {"type": "SDSAConfig", **obj.to_dict()}
    if not is_dataclass(obj) or type(obj).__name__ not in PIECES:
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


def decode(desc, arrays, where="layer", *, types=None):
    """The piece `encode` described, its arrays taken from `arrays`; `BundleError` when the
    description does not make sense. `types` maps the type tags to the classes to build
    (default `PIECES`, this module's descriptions; `sw.int_model.PIECES` for runnable ones)."""
    types = PIECES if types is None else types
    if desc is None:
        return None
    if not isinstance(desc, dict) or "type" not in desc:
        raise BundleError(f"{where}: expected a mapping with a 'type'")
    kind = desc["type"]
    body = {k: v for k, v in desc.items() if k != "type"}
    try:
        if kind == "SDSAConfig":
            return SDSAConfig.from_dict(body)
        cls = types.get(kind)
        if cls is None:
            raise BundleError(f"{where}: unknown piece type {kind!r}")
        known = {f.name for f in fields(cls)}
        needed = known - LATER_KEYS.get(kind, set())
        if not needed <= set(body) <= known:
            optional = f" (optional: {sorted(known - needed)})" if known != needed else ""
            raise BundleError(f"{where}: a {kind} needs the keys {sorted(needed)}{optional}, "
                              f"not {sorted(body)}")
        values = {}
        for key, value in body.items():
            if isinstance(value, dict) and set(value) == {"array"}:
                if value["array"] not in arrays:
                    raise BundleError(f"{where}: array {value['array']!r} is missing")
                values[key] = np.asarray(arrays[value["array"]], dtype=np.int64)
            elif isinstance(value, dict):
                values[key] = decode(value, arrays, f"{where}.{key}", types=types)
            elif isinstance(value, list):
                values[key] = tuple(float(v) for v in value)
            else:
                values[key] = value
        return cls(**values)
    except BundleError:
        raise
    except (TypeError, ValueError, ConfigError) as exc:
        raise BundleError(f"{where}: {exc}") from None


def read_network_bundle(path, *, types=None, network=IntNetwork):
    """(unit, network or list of block layers, bundle) from a network or block bundle; the
    network's widths and settings restored. The pieces are built from `types` (see `decode`),
    the network is a `network`."""
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
    layers = [decode(d, bundle.arrays, f"bundle {src!r} layer {n}", types=types)
              for n, d in enumerate(cfg["layers"])]
    head = decode(cfg["head"], bundle.arrays, f"bundle {src!r} head", types=types) \
        if bundle.unit == "network" else None
    try:
        if bundle.unit == "block":
            check_layers(layers, widths, int(cfg["timesteps"]))
            return "block", layers, bundle
        net = network(layers=layers, head=head, timesteps=int(cfg["timesteps"]),
                      input_bits=int(cfg["input_bits"]), input_scale=float(cfg["input_scale"]),
                      widths=dict(widths), info=dict(cfg.get("quantizer") or {}))
        net.check()
    except BundleError:
        raise
    except (ConfigError, ValueError, TypeError) as exc:
        raise BundleError(f"bundle {src!r}: {exc}") from None
    return "network", net, bundle
