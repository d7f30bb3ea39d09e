"""Stacked training: K seeds of one design trained at once in one process, each the
same training as its solo run (run/), each into an ordinary run folder."""
