"""Retraining from what production captured: an offline capture of the world, and the selection report."""
