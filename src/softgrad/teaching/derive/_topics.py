"""The registry of topics, in the order ``softgrad derive --list`` shows them."""

from __future__ import annotations

from ._spec import TopicSpec
from ._t_layers import CROSS_ENTROPY_LAYER, POLICY_GRADIENT, SOFTMAX_LAYER
from ._t_losses import CROSS_ENTROPY
from ._t_relatives import SIGMOID, SOFTMAX_INVERSE
from ._t_softmax import LOG_SOFTMAX, LOGSUMEXP, SOFTMAX, SOFTMAX_HESSIAN, SOFTMAX_TEMPERATURE

SPECS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        SOFTMAX,
        LOG_SOFTMAX,
        LOGSUMEXP,
        CROSS_ENTROPY,
        SOFTMAX_LAYER,
        CROSS_ENTROPY_LAYER,
        SOFTMAX_TEMPERATURE,
        SOFTMAX_HESSIAN,
        SIGMOID,
        POLICY_GRADIENT,
        SOFTMAX_INVERSE,
    )
}
