"""The CRNN of the papers and its self-describing checkpoints."""
