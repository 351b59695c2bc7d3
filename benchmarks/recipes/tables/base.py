# `mae-bench tables`: the paper's tables from result files (results/tables.py).
reference = None  # reference numbers CSV; None: results/reference/mae_reference.csv
show_reference = True  # False: measured rows only
decimals = 1  # digits after the point in measured cells (reference numbers are shown as written)
plots = True  # fig5_mask_ratio.png, fig7_pretrain_epochs.png and fig9_partial.png
