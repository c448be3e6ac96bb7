"""The sync runner (placeholder until the runner lands)."""
