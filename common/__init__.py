"""The experiment suite's library: the notebooks and run_all.py call into its modules."""
