"""Training: the one TensorFlow import, models, optimizers (M-SVAG, SVAG, sign descent), graph, loop, checkpoints."""

# Training steps per Session call of the training loop (tasks.training.graph): amortises the per-call
# overhead (~0.2 ms, ~15% of an MLP step at batch 64). Here, free of TensorFlow, so that a benchmark's
# Keras peer can use the same chunk without switching TensorFlow into graph mode.
CHUNK_STEPS = 100

# The module whose import loads TensorFlow (tasks.training.tf1): its presence in sys.modules says whether
# this process has loaded it (pipeline/warm.py preloads it; run.json records whether a run inherited it).
TF_MODULE = "tasks.training.tf1"
