"""The store contract suite: one set of tests every ``Store`` implementation passes."""
