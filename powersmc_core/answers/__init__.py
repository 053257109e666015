"""Answers in completions: extraction, decision rules and grading."""
