"""Bootstrap weight rows for tests, written out directly: the full sample once, and all resamples drawn in one
call (the reference that `sepit.metrics.bootstrap.iter_resample_weights`'s blocks must equal)."""

import numpy as np


def point_weights(n: int) -> np.ndarray:
    """The weights of the full sample, once each. (1, n)"""
    return np.ones((1, n))


def resample_weights(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """Row b counts how often each of n samples is drawn in resample b. (B, n)"""
    if n == 0:
        return np.zeros((n_resamples, 0), dtype=np.int64)
    return np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_resamples)
