"""The one-command demo (demo.py): synthetic speaker -> data pipeline -> SyncNet + tiny LawDNet -> dub a held-out
sentence -> metrics against ground truth and two baselines -> report.html. Benchmarks reuse its steps."""
from demo.pipeline import DemoOptions, run_demo
from demo.speaker import SpeakerSpec
from demo.training import TinyModel

__all__ = ["DemoOptions", "SpeakerSpec", "TinyModel", "run_demo"]
