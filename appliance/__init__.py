"""appliance: a container cloud where every server runs one trio process."""

__version__ = "0.1.0"
