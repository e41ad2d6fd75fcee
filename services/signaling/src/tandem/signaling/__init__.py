"""Signaling: the client WebSocket and the call state machine."""
