"""A tiny generator/discriminator for CPU tests and demos (not a quality setting).

``tiny`` is a frame stage, ``tiny_clip`` the clip stage with the same network (it starts from tiny's final.pth).
"""
TRAIN = dict(mouth_region_size=64, augment_num=4, batch_size=2, clip_stage=False,
             epochs_non_decay=1, epochs_decay=1, num_workers=0, log_every=5, image_every=20,
             sync_warmup_steps=10)
CLIP_TRAIN = dict(clip_stage=True, batch_size=1, lamb_sync=0.1)
MODEL = dict(encoder_channels=(16, 32, 64), align_channels=32, attn_dim=64, decoder_channels=32)
# 3 blocks keep a valid patch map down to mouth size 32 (52x40 crops)
DISCRIMINATOR = dict(block_expansion=16, num_blocks=3, max_features=64)
