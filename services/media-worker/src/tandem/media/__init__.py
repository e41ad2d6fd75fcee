"""The media worker: terminates WebRTC, processes call audio, forwards video."""
