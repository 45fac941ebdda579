"""Stage 2: frame training at mouth size 128 (208x160 crops), initialised from frame_64."""
TRAIN = dict(mouth_region_size=128, augment_num=100, batch_size=8, clip_stage=False,
             epochs_non_decay=5, epochs_decay=5)
MODEL = {}
