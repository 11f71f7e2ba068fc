"""Who spoke: speaker embeddings (Resemblyzer GE2E in numpy), clustering and labels."""
