"""Training of LawDNet: stage options, distributed set-up, resumable sampling, losses, checkpoints, logging and
the training loop (training.trainer.train / train_stage). Entry point: train_sequence_distributed.py."""
