"""The web process: app factory, request plumbing (auth, limits, errors), the SSE stream."""
