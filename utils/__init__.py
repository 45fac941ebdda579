"""Truly shared helpers: atomic writes (atomic.py), user errors (errors.py), device strings (device.py).

One concept per sub-package: media/ (video and audio I/O), face/ (landmarks, alignment), audio/ (feature
front-ends), synthetic/ (synthetic talking heads)."""
