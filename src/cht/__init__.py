"""cht — record a live stream and turn it into a browsable, searchable timeline while it records."""

__version__ = "0.1.0"
