"""The surrogate beside a reference frame by frame, the app's GUI-free controller, background jobs."""
