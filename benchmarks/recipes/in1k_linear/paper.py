# The paper's linear probe, the schema's defaults (kept as its own name so every task has a `paper` recipe).
