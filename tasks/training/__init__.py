"""Training: the one TensorFlow import, models, optimizers (M-SVAG, SVAG, sign descent), graph, loop, checkpoints."""
