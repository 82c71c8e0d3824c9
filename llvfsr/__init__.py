"""llvfsr: LLV-FSR face super-resolution, its baselines, and the sweep system that reproduces the paper."""

__version__ = "0.1.0"
