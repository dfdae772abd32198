"""Physics: the Cahn–Hilliard equations, the papers' presets, initial fields."""
