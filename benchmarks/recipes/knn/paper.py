# DINO's k-NN evaluation on ImageNet (eval_knn.py defaults, k = 20 of its 10/20/100/200): the schema's defaults.
