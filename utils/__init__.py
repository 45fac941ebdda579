"""Shared utilities: audio/video I/O, landmarks, face alignment, synthetic data."""
