"""Evaluation metrics: PSNR/SSIM, LSE-D/LSE-C (syncnet_v2 and our SyncNet), mouth-audio correlation, jitter, seam."""
from evaluation.core import evaluate  # noqa: F401
from evaluation.image_metrics import psnr, ssim  # noqa: F401
from evaluation.syncnet_v2 import SyncNetV2, load_syncnet_v2  # noqa: F401
