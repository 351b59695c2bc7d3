"""The CLI, task registry, recipes, synthetic data and speed benchmarks."""
