"""Readers of the official on-disk formats, one per benchmark, and the map-style dataset they feed."""
