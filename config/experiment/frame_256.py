"""Stage 3: frame training at mouth size 256 (416x320 crops), initialised from frame_128."""
TRAIN = dict(mouth_region_size=256, augment_num=20, batch_size=4, clip_stage=False,
             epochs_non_decay=5, epochs_decay=5)
MODEL = {}
