"""The shell around the pure core: executing handlers, and running workflows."""
