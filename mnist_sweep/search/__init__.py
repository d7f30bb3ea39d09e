"""Searching over runs: the Optuna sweeper, its pruners and samplers, the study's report,
and confirmation on fresh seeds."""
