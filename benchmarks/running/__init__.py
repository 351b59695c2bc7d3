"""Running and recording one task: the run folder (lock, recipe, leftovers) and the result record."""
