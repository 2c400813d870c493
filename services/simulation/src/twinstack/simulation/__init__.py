"""Simulation: numba-compiled scenario kernels, fanned out as sweeps on Ray."""
