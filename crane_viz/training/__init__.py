"""Datasets of reference trajectories, the training loop, training jobs, learning curves."""
