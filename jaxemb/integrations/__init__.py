"""Bridges to other tools; each module imports its tool only when used (optional extras)."""
