"""Lion as a tf.compat.v1 Optimizer: the update rule of arXiv:2302.06675, Algorithm 2 (see the package docstring)."""

from __future__ import annotations

import tensorflow.compat.v1 as tf


class LionOptimizer(tf.train.Optimizer):
    """Lion: θ ← θ - η (sign(β1 m + (1-β1) g) + λ θ), then m ← β2 m + (1-β2) g (arXiv:2302.06675)."""

    def __init__(self, learning_rate, beta1=0.9, beta2=0.99, weight_decay=0.0, use_locking=False, name="Lion"):
        super().__init__(use_locking, name)
        self._lr = learning_rate
        self._beta1 = beta1
        self._beta2 = beta2
        self._weight_decay = weight_decay

    def _create_slots(self, var_list):
        for var in var_list:
            self._zeros_slot(var, "m", self._name)

    def _prepare(self):
        self._lr_t = tf.convert_to_tensor(self._call_if_callable(self._lr), name="learning_rate")
        self._beta1_t = tf.convert_to_tensor(self._beta1, name="beta1")
        self._beta2_t = tf.convert_to_tensor(self._beta2, name="beta2")
        self._weight_decay_t = tf.convert_to_tensor(self._weight_decay, name="weight_decay")

    def _update(self, grad, var):
        dtype = var.dtype.base_dtype
        lr, beta1, beta2, weight_decay = (
            tf.cast(value, dtype) for value in (self._lr_t, self._beta1_t, self._beta2_t, self._weight_decay_t)
        )
        m = self.get_slot(var, "m")
        m_prev = tf.identity(m.read_value() if hasattr(m, "read_value") else m)
        c = beta1 * m_prev + (1.0 - beta1) * grad
        step = lr * (tf.sign(c) + weight_decay * var)
        var_update = tf.assign_sub(var, step, use_locking=self._use_locking)
        # m_t from m_{t-1}, after θ's update has read c (so the two never race on the slot).
        with tf.control_dependencies([var_update]):
            m_update = tf.assign(m, beta2 * m_prev + (1.0 - beta2) * grad, use_locking=self._use_locking)
        return tf.group(var_update, m_update)

    def _apply_dense(self, grad, var):
        return self._update(grad, var)

    def _resource_apply_dense(self, grad, handle):
        return self._update(grad, handle)

    def _apply_sparse(self, grad, var):
        return self._update(tf.convert_to_tensor(grad), var)

    def _resource_apply_sparse(self, grad, handle, indices):
        dense = tf.scatter_nd(tf.expand_dims(indices, -1), grad, tf.shape(handle, out_type=indices.dtype))
        return self._update(dense, handle)
