"""Training: the one loop (``loop.fit``) every model family's task runs on (tasks live in harmlib.<family>.task)."""
