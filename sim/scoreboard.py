"""In-order scoreboard that names the first divergence."""

from dataclasses import dataclass, field

__all__ = ["Expected", "Scoreboard", "ScoreboardMismatch"]


class ScoreboardMismatch(AssertionError):
    """An output beat differs from the reference; the message names where and how."""


@dataclass(frozen=True)
class Expected:
    """One expected output beat.

    `values` maps field names to ints or per-lane lists. `where` names the beat's place in the
    traces (e.g. sample and timestep); lane `j` of an array field is element `lane_base + j` of
    the dimension called `lane_name` (e.g. neuron). Padding lanes are expected as 0, so a
    mismatch there names an element past the end of the dimension.
    """

    values: dict
    where: dict = field(default_factory=dict)
    lane_name: str = "lane"
    lane_base: int = 0


class Scoreboard:
    """Compares output beats with expected beats, in order.

    Raises `ScoreboardMismatch` at the first beat that differs, with the unit, the beat's place
    (sample, timestep, ...), the lane's element (neuron, channel, ...), the cycle, the field, and
    the expected and actual values. `fields` limits the comparison (default: every expected field).
    """

    def __init__(self, unit, expected, *, fields=None):
        self.unit = unit
        self._expected = list(expected)
        self._fields = fields
        self.matched = 0

    @property
    def pending(self):
        return len(self._expected) - self.matched

    def check(self, actual, cycle):
        index = self.matched
        if index >= len(self._expected):
            raise ScoreboardMismatch(
                f"{self.unit}: unexpected output beat {index} at cycle {cycle}: {actual} "
                f"(only {len(self._expected)} expected)"
            )
        exp = self._expected[index]
        names = self._fields if self._fields is not None else list(exp.values)
        for name in names:
            want, got = exp.values[name], actual[name]
            if want == got:
                continue
            place = ", ".join(f"{k} {v}" for k, v in exp.where.items()) or "no place given"
            if isinstance(want, list):
                lane = next(j for j, (a, b) in enumerate(zip(want, got, strict=True)) if a != b)
                element = f"{exp.lane_name} {exp.lane_base + lane} (lane {lane})"
                want, got = want[lane], got[lane]
            else:
                element = "beat marker"
            raise ScoreboardMismatch(
                f"{self.unit}: first divergence at output beat {index}, cycle {cycle}: "
                f"{place}, {element}: {name} expected {want}, got {got}"
            )
        self.matched += 1

    def check_done(self):
        if self.pending:
            raise ScoreboardMismatch(
                f"{self.unit}: {self.pending} of {len(self._expected)} expected beats never "
                f"arrived (next: {self._expected[self.matched].where})"
            )
