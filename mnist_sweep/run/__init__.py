"""Training one run: config -> data, model, optimizer -> the fit loop -> the run folder."""
