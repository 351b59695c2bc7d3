"""Result records, the aggregator and the reference numbers. Imports no torch."""
