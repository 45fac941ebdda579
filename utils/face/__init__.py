"""Face geometry: dlib landmarks and tracking (landmarks.py); the one aligner, source mask and paste-back (align.py)."""
