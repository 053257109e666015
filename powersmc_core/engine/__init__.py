"""The engine: particle state, one step, strategies (proposal, target, schedule, resampler), records."""
