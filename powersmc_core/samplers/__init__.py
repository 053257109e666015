"""Samplers built on the engine or beside it (MH, baselines) and the one method registry."""
