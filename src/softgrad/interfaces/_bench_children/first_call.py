"""Child of ``softgrad bench``: import time of softgrad and the first and second softmax calls.

Prints ``{"import_s", "first_softmax_<dtype>_s", "second_softmax_<dtype>_s"}`` as one JSON
line. Run by path, so that softgrad is not imported before the clock starts.
"""

from __future__ import annotations

import json
import time


def main() -> None:
    t0 = time.perf_counter()
    import numpy as np

    import softgrad as sg

    out = {"import_s": time.perf_counter() - t0}
    for dt in ("float32", "float64"):
        x = np.ones((8, 8), dtype=dt)
        t = time.perf_counter()
        sg.softmax(x)
        out["first_softmax_" + dt + "_s"] = time.perf_counter() - t
        t = time.perf_counter()
        sg.softmax(x)
        out["second_softmax_" + dt + "_s"] = time.perf_counter() - t
    print(json.dumps(out))


if __name__ == "__main__":
    main()
