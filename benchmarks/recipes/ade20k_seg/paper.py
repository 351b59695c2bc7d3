# The paper's ADE20K numbers for ViT-B/16 (the schema's defaults). ViT-L/16: --set model.drop_path=0.2 optim.layer_decay=0.75
# is the usual choice; out indices (7, 11, 15, 23) are picked from the depth.
