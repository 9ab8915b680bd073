"""PerTok: expressive MIDI tokenization (composition and performance kept apart)."""
