"""Audio front-ends: the contract (base.py), the registry (features.py), mel, DeepSpeech v0.1, DeepSpeech2, HuBERT."""
