"""``softgrad explore``: a local web page to watch softmax, its Jacobian and the gradients move.

The server computes, the page only draws: :mod:`.compute` holds the numbers (plain softgrad
calls), :mod:`.schema` checks the requests, :mod:`.app` is the Starlette application with the
JSON API (documented in docs/explore.md) and :mod:`.server` runs it with uvicorn. The page and
its vendored KaTeX live in ``static/``. Starlette and uvicorn load only when the explorer runs.
"""

from __future__ import annotations

__all__: list[str] = []
