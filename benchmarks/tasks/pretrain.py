"""MAE pretraining (the paper's section 3), a task like the others: `mae-bench pretrain` runs it and it writes
RUN/result.json (its metric: the last epoch's mean loss). Its runner lives in transfer/ because the optional
k-NN monitor reads labelled ImageFolder data (`transfer.classification.knn_monitor`); with the monitor off it
is `mae_core.pretrain.run_pretrain` unchanged."""
from . import register_task

register_task("pretrain", "transfer.classification.knn_monitor:run_pretrain_monitored", data="imagenet",
              metrics=("loss",), eval_data="ImageNet-1K train", pretraining=True)
