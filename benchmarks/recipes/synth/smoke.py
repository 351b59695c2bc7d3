n_train = 96
n_val = 32
