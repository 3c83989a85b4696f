"""Unit configurations, the integer network's description, the bundle format and the shared
command-line machinery: the bottom layer, which every other package may import.

Everything else reads its parameters from here. This package imports neither Amaranth nor torch.
"""

from .errors import BundleError, ConfigError
from .lif import LIFConfig

__all__ = ["BundleError", "ConfigError", "LIFConfig"]
