"""HTTP and WebSocket endpoints: I/O at the edge, decisions in the core."""
