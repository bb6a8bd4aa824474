"""The delivery path: keep → materialize → process → export, off the calling thread when buffered."""
