"""Re-implementations of the Table 1 baselines of LLV-FSR, one module each, built through `llvfsr.models.build`."""
