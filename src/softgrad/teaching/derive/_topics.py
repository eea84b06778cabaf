"""The registry of topics, in the order ``softgrad derive --list`` shows them."""

from __future__ import annotations

from ._spec import TopicSpec
from ._t_losses import CROSS_ENTROPY
from ._t_softmax import SOFTMAX

SPECS: dict[str, TopicSpec] = {spec.name: spec for spec in (SOFTMAX, CROSS_ENTROPY)}
