"""Interfaces layer: the command line, plots and benchmarks. Nothing below imports it."""
