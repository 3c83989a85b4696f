"""Unit configurations and the bundle format.

Everything else reads its parameters from here. This package imports neither Amaranth nor torch.
"""

from .errors import BundleError, ConfigError
from .lif import LIFConfig

__all__ = ["BundleError", "ConfigError", "LIFConfig"]
