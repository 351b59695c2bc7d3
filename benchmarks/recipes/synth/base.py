# The synthetic scene set: one generator, three layouts (ImageFolder, COCO, ADE20K).
n_train = 600
n_val = 150
img_size = 64
seed = 0
