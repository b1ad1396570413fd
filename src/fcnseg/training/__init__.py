"""Training: the Trainer loop, optimizers and learning-rate schedules, torchrun DDP, the log.

trainer.py       epochs, validation, checkpoints, exact resume
checkpointing.py last.pt then best.pt each epoch, and best.pt repaired on resume
tasks.py         per task (semantic, instance): validation, history figures, best.pt score
optim.py         optimizer and the learning rate as a function of progress
distributed.py   torchrun: process group, sharded loaders, sums across ranks
log.py           progress bar, one line per epoch, history.json, the trackers
trackers.py      experiment trackers (train.trackers): TensorBoard, MLflow
"""
