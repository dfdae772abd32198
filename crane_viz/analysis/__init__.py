"""Measures, the papers' evaluation protocol, phase-diagram sweeps, model cards."""
