"""Exchange weights and gradients with other frameworks (optional extras)."""
