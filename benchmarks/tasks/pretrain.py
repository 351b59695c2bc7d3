"""MAE pretraining (the paper's section 3), a task like the others: `mae-bench pretrain` runs it and it writes
RUN/result.json (its metric: the last epoch's mean loss)."""
from . import register_task

register_task("pretrain", "mae_core.pretrain:run_pretrain", data="imagenet", metrics=("loss",),
              eval_data="ImageNet-1K train", pretraining=True)
