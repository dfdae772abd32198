"""crane_viz: Cahn–Hilliard phase-field evolution, its CRNN surrogate, and the tools to see both."""

__version__ = "0.1.0"
