"""Stage 1: frame training at mouth size 64 (104x80 crops), from scratch."""
TRAIN = dict(mouth_region_size=64, augment_num=32, batch_size=16, clip_stage=False,
             epochs_non_decay=5, epochs_decay=5)
MODEL = {}  # the official generator
