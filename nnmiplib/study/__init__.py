"""Chapter computations: one module per book chapter (the notebooks stay thin)."""
