# Paper Figure 7: pretraining schedule length (epochs), fine-tune and linear-probe top-1.
knob = "schedule.epochs"
values = [100, 200, 400, 800, 1600]
table = "fig7_pretrain_epochs"
scales = dict(smoke=dict(values=[10, 20, 40]),  # 1600 epochs of the smoke recipe would take hours on 2 CPU cores
              ci=dict(values=[8, 16, 32, 64]))  # the ci scale's 32 epochs halved, doubled
