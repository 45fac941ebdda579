"""File formats by extension: which videos the toolkit reads, which it writes.

VIDEO_EXTS (inputs: data preparation, the demo's video folders) is wider than OUTPUT_VIDEO_EXTS (the containers
VideoWriter can mux H.264 + AAC into, OUTPUT_FORMATS: the dub's output path).
"""
VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".avi", ".m4v", ".webm", ".mpg", ".mpeg", ".flv", ".ts", ".wmv")
# Output extension -> libav muxer.
OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}
OUTPUT_VIDEO_EXTS = tuple(OUTPUT_FORMATS)
