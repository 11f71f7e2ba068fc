"""Live speech-to-text: VAD-bounded chunks, one worker, words on the global clock."""
