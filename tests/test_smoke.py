import numpy as np

import softgrad as sg


def test_seed_examples():
    expected = [0.09003057, 0.24472847, 0.66524096]
    np.testing.assert_allclose(sg.softmax([1.0, 2.0, 3.0]), expected, atol=5e-9)
    assert np.array_equal(sg.softmax([1000.0, 2000.0, 3000.0]), [0.0, 0.0, 1.0])
