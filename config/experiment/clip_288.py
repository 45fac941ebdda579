"""Stage 4: clip training (5 consecutive frames, temporal discriminator, SyncNet loss) at mouth size 288
(468x360 crops), initialised from frame_256; the official config calls it "clip_256".

batch_size counts clips: 1 clip = 5 frames per GPU. The original's README advises > 200 epochs if mouths stay blurry.
"""
TRAIN = dict(mouth_region_size=288, augment_num=3, batch_size=1, clip_stage=True,
             epochs_non_decay=85, epochs_decay=85, lamb_sync=0.1)
MODEL = {}
