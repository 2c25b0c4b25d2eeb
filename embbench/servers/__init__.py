"""The HTTP servers the variants launch: model, locks, batching queue, app factory."""
