"""The data stage: sources and transfer, IDX parsing, the Arrow cache, the split. Never imports TensorFlow."""
