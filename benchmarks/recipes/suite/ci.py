# The CI regression suite: pretrain a tiny MAE, train the supervised-from-scratch baseline, run all five
# tasks and the k-NN probe for the MAE / supervised / scratch inits, build the tables, compare with benchmarks/baselines/ci.json.
# Sized for 2 CPU cores on the synthetic 64 px scenes (`mae-bench demo` runs it); real-data subsets work too.
_base_ = ["./base.py"]
