"""LiveKit Agents adapter for stt-core: a skeleton until its issue lands."""
