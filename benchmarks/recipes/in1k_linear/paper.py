# The paper's linear probe, as in base.py (kept as its own name so every task has a `paper` recipe).
