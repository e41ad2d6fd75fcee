"""Matchmaking: hosts' presence, candidate scoring and assignment."""
