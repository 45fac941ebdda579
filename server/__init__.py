"""LawDNet HTTP dubbing server (see server_LawDNet.py). ``create_app(config)`` builds the ASGI app."""
from server.app import create_app  # noqa: F401
from server.config import ServerConfig  # noqa: F401
