"""What every unit configuration shares: dict and YAML round trips, validated on the way in."""

from dataclasses import fields

from .errors import ConfigError
from .yamlio import atomic_write_text, dump_yaml, read_yaml_mapping

__all__ = ["UnitConfig"]


class UnitConfig:
    """Mixin for a frozen configuration dataclass; subclasses set `UNIT` (the `unit:` key of
    its YAML form) and `NAME` (how messages call it, with its article)."""

    UNIT = ""
    NAME = ""

    def to_dict(self):
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data):
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.NAME} configuration must be a mapping, not "
                              f"{type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known, key=str)
        if unknown:
            title = cls.NAME.split(" ", 1)[1]
            raise ConfigError(
                f"unknown {title} configuration key {unknown[0]!r} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**data)

    def replace(self, **changes):
        return type(self).from_dict({**self.to_dict(), **changes})

    def to_yaml(self):
        return dump_yaml({"unit": self.UNIT, "config": self.to_dict()})

    def save(self, path):
        atomic_write_text(path, self.to_yaml())

    @classmethod
    def load(cls, path):
        data = read_yaml_mapping(path)
        if data.get("unit") != cls.UNIT or "config" not in data:
            raise ConfigError(
                f"configuration file {str(path)!r} is not {cls.NAME} configuration "
                f"(expected 'unit: {cls.UNIT}' and a 'config' mapping)"
            )
        return cls.from_dict(data["config"])
