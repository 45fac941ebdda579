"""LawDNet networks. ``from models import load_lawdnet`` gives a ready generator from any checkpoint."""
from models.checkpoint import load_lawdnet, read_checkpoint, save_checkpoint, save_lawdnet  # noqa: F401
from models.lawdnet import LawDNet  # noqa: F401
from models.local_affine_warp import LocalAffineWarp, use_compiled_warp  # noqa: F401
