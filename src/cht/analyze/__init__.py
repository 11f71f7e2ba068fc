"""Analysis of what the recorder wrote: decode once, then scenes, waveform (and transcript)."""
