"""Command-line tools: ``python -m powersmc_core run|bench|eval ...``."""
