"""Inference pipeline pieces: template cache, reference choice, ping-pong schedule, streaming dubber."""
from inference.dubber import DubAudio, Dubber, PreparedTemplate, load_dub_audio  # noqa: F401
from inference.references import select_reference_indices  # noqa: F401
from inference.schedule import pingpong_index  # noqa: F401
from inference.template import Template, prepare_template  # noqa: F401
