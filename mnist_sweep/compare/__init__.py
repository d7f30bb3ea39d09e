"""Looking at runs: tables and plots over any set of run folders."""
