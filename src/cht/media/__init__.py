"""Media helpers: the ffmpeg binary and its argument lists, and fragmented-MP4 parsing."""
