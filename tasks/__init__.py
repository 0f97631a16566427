"""The work layer of fmnist-pipeline: plain Python, numpy, pyarrow and TensorFlow (compat.v1).

Nothing in this package imports luigi; every module is usable on its own.
"""
