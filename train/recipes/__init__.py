"""End-to-end recipes: one resumable command that reproduces a shipped model."""
