"""Errors raised for input the tool cannot honour."""


class ConfigError(ValueError):
    """A unit configuration is invalid; the message names the bad value."""


class BundleError(ValueError):
    """A bundle is missing, corrupt, or inconsistent with its configuration."""
