"""Built-in sync executors (placeholder)."""
