"""Orchestration: many steps in order (the suite, sweeps) and where they run (this process or SLURM jobs)."""
