"""Training: one shared loop (loop.fit) and one task builder per model family."""
