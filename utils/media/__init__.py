"""Media I/O: the one video reader/writer (video_io.py) and the one audio decoder (audio_io.py)."""
