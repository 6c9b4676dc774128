"""SEPIT-Bench: structure-enhanced protein instruction tuning and a benchmark suite around it."""

__version__ = "0.1.0"
