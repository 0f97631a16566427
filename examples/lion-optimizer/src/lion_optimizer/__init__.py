"""Lion, "EvoLved Sign Momentum", as a TF1 (tf.compat.v1) optimizer; an fmnist-pipeline optimizer plugin.

Chen et al., "Symbolic Discovery of Optimization Algorithms", arXiv:2302.06675 (2023), Algorithm 2.
Written from its equations; elementwise per coordinate of the parameters θ, t = 1, 2, ...:

    g_t   stochastic gradient at θ_{t-1}
    c_t = β1 m_{t-1} + (1-β1) g_t                       (interpolation: the update's direction)
    θ_t = θ_{t-1} - η (sign(c_t) + λ θ_{t-1})           (decoupled weight decay λ)
    m_t = β2 m_{t-1} + (1-β2) g_t                       (m_0 = 0: the momentum the next step reads)

η is the learning rate, β1 = 0.9 and β2 = 0.99 the paper's defaults, λ = 0 here (no weight decay).
sign(0) = 0, and a NaN gradient gives a NaN step, so the pipeline sees the divergence.

The entry point `lion` (group `fmnist_pipeline.optimizers`) names `lion(learning_rate, *, beta1, beta2,
weight_decay)`: its keyword-only defaults are the hyper-parameters a config may set. This module does not
import TensorFlow (the optimizer lives in `lion_optimizer.optimizer`, imported by the factory), so the
pipeline can read the factory's signature while it plans, without loading TF.
"""

from __future__ import annotations

__all__ = ["lion"]


def lion(learning_rate, *, beta1=0.9, beta2=0.99, weight_decay=0.0):
    """The plugin's factory: Lion with the paper's defaults (β1 = 0.9, β2 = 0.99), no weight decay."""
    from lion_optimizer.optimizer import LionOptimizer

    return LionOptimizer(learning_rate, beta1=beta1, beta2=beta2, weight_decay=weight_decay)
