"""Recording: what a SOURCE means, the ffmpeg recorder, and the segment tracker."""
