"""From MLflow runs back to the paper's tables and figures."""
