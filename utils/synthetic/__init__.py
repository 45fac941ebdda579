"""Synthetic talking heads with ground truth: speech.py (espeak-ng + visemes), face.py (the warped face),
talking_head.py (videos and data sets; ``python -m utils.synthetic``)."""
