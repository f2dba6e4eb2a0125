"""Experiments: every figure and explorer of the two tutorials as batched scripts (see reproduce.py)."""
