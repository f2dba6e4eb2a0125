"""Benchmarks: speed, memory, start-up and calibration measurements of jaxlif (see README.md in this folder)."""
