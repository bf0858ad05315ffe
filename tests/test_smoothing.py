"""One-Euro filter: the paper's recurrence by hand, noise reduction, lag on a ramp, missing samples."""
import math

import numpy as np
import pytest

from posekit.errors import PosekitError
from posekit.track.smoothing import OneEuroFilter, PoseSmoother, smoothing_factor


def alpha(dt, cutoff):
    """1 / (1 + tau / dt) with tau = 1 / (2 pi cutoff) (Casiraghi et al. 2012, eq. for alpha)."""
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def test_smoothing_factor_is_the_papers_alpha():
    for dt, fc in [(0.1, 1.0), (1 / 30, 2.5), (0.02, 0.3)]:
        assert smoothing_factor(dt, fc) == pytest.approx(alpha(dt, fc), rel=1e-12)


def test_recurrence_by_hand():
    # min_cutoff 1 Hz, beta 0.5, d_cutoff 1 Hz; samples x = 0, 1, 3 at t = 0, 0.1, 0.2 s.
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    assert f(0.0, 0.0) == 0.0                       # first sample passes, dx_hat = 0
    # t = 0.1: a_d = 0.628319 / 1.628319 = 0.385870; dx_hat = a_d * (1 - 0) / 0.1 = 3.858695
    # cutoff = 1 + 0.5 * 3.858695 = 2.929348; a = alpha(0.1, 2.929348) = 0.647957
    # x_hat = 0.647957 * 1 + 0.352043 * 0 = 0.647957
    assert f(0.1, 1.0) == pytest.approx(0.6479571695923358, abs=1e-12)
    # t = 0.2: dx_hat = 0.385870 * (3 - 1) / 0.1 + 0.614130 * 3.858695 = 10.087133
    # cutoff = 1 + 0.5 * 10.087133 = 6.043567; a = 0.791549
    # x_hat = 0.791549 * 3 + 0.208451 * 0.647957 = 2.509714
    assert f(0.2, 3.0) == pytest.approx(2.5097137502692606, abs=1e-12)
    # t = 0.3 missing: the raw value comes back and the state is held.
    assert f(0.3, 100.0, valid=False) == 100.0
    # t = 0.4, x = 4: dt spans the gap (0.2 s), the speed is measured from the last sample (3):
    # a_d = alpha(0.2, 1) = 0.556863; dx_hat = 0.556863 * (4 - 3) / 0.2 + 0.443137 * 10.087133 = 7.254298
    # cutoff = 4.627149; x_hat = alpha(0.2, 4.627149) * 4 + (1 - ...) * 2.509714 = 3.781311
    assert f(0.4, 4.0) == pytest.approx(3.781311311774206, abs=1e-12)


def test_elements_are_independent_signals():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    out = [f(t, np.array([x, 10 * x, -x])) for t, x in [(0.0, 0.0), (0.1, 1.0), (0.2, 3.0)]]
    scalar = OneEuroFilter(1.0, 0.5, 1.0)
    expected = [scalar(t, x) for t, x in [(0.0, 0.0), (0.1, 1.0), (0.2, 3.0)]]
    np.testing.assert_allclose([o[0] for o in out], expected, rtol=1e-12)
    np.testing.assert_allclose([-o[2] for o in out], expected, rtol=1e-12)
    assert out[2][1] != pytest.approx(10 * expected[2])   # beta makes it nonlinear in x


def test_noisy_constant_variance_drops_as_an_exponential_filter_predicts():
    # With beta = 0 the filter is exponential smoothing with a fixed alpha, whose output variance
    # on white noise is sigma^2 * a / (2 - a).
    rng = np.random.default_rng(0)
    dt, fc = 1 / 30, 1.0
    x = 5.0 + rng.normal(0.0, 2.0, (3000, 4))
    f = OneEuroFilter(min_cutoff=fc, beta=0.0)
    y = np.array([f(i * dt, xi) for i, xi in enumerate(x)])[100:]
    a = alpha(dt, fc)
    ratio = y.var() / x[100:].var()
    assert ratio == pytest.approx(a / (2 - a), rel=0.15)
    assert ratio < 0.15
    assert abs(y.mean() - 5.0) < 0.1


def test_ramp_lag_is_the_steady_state_value():
    # On x = v t the speed estimate converges to v, the cutoff to min_cutoff + beta v, and an
    # exponential filter on a ramp lags by v dt (1 - a) / a.
    v, dt, fc, beta = 3.0, 0.02, 1.0, 0.4
    f = OneEuroFilter(min_cutoff=fc, beta=beta, d_cutoff=1.0)
    times = np.arange(2000) * dt
    y = np.array([f(t, v * t) for t in times])
    a = alpha(dt, fc + beta * v)
    lag = v * times - y
    assert lag[-1] == pytest.approx(v * dt * (1 - a) / a, rel=1e-6)
    assert np.all(lag[1:] > 0) and np.all(lag <= v * dt * (1 - alpha(dt, fc)) / alpha(dt, fc) + 1e-9)


def test_higher_beta_follows_a_ramp_with_less_lag():
    lags = []
    for beta in (0.0, 1.0, 10.0):
        f = OneEuroFilter(1.0, beta)
        for t in np.arange(300) / 30:
            out = f(t, 50 * t)
        lags.append(50 * t - out)
    assert lags[0] > lags[1] > lags[2] > 0


def test_time_must_increase_and_shapes_must_stay():
    f = OneEuroFilter()
    f(1.0, np.zeros(3))
    with pytest.raises(PosekitError, match="not after"):
        f(1.0, np.ones(3))
    with pytest.raises(PosekitError, match="shape"):
        f(2.0, np.ones(4))
    with pytest.raises(PosekitError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0)
    with pytest.raises(PosekitError, match="beta"):
        OneEuroFilter(beta=-1)


def test_pose_smoother_is_scale_invariant_and_holds_low_scores():
    rng = np.random.default_rng(1)
    kp = rng.normal(100, 5, (20, 1, 3, 2)).cumsum(axis=0)
    scores = np.full((20, 1, 3), 0.9)
    scores[5:8, 0, 1] = 0.1                                 # keypoint 1 drops out for 3 frames
    box = np.array([[0.0, 0.0, 80.0, 120.0]])
    small, large = PoseSmoother(beta=5.0), PoseSmoother(beta=5.0)
    for i in range(20):
        t = i / 25
        a = small(t, [7], kp[i], scores[i], box)
        b = large(t, [7], 2 * kp[i], scores[i], 2 * box)
        np.testing.assert_allclose(b, 2 * a, rtol=1e-12)   # speed in person sizes: same filtering
        if 5 <= i < 8:
            np.testing.assert_array_equal(a[0, 1], kp[i, 0, 1])
    assert not np.allclose(a, kp[-1])                       # it did smooth


def test_pose_smoother_keeps_tracks_apart_and_forgets_ended_ones():
    s = PoseSmoother()
    kp = np.zeros((2, 1, 2))
    s(0.0, [1, 2], kp, np.ones((2, 1)), np.array([[0, 0, 10, 10]] * 2, float))
    out = s(0.1, [2, 1], np.array([[[10.0, 0.0]], [[0.0, 0.0]]]), np.ones((2, 1)),
            np.array([[0, 0, 10, 10]] * 2, float))
    assert out[1, 0, 0] == 0.0 and 0 < out[0, 0, 0] < 10
    s.retain([2])
    assert set(s.filters) == {2}
