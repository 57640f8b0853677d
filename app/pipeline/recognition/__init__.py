"""The per-frame path: detect, align, embed, search, decide, track; sources and the stream loop."""
