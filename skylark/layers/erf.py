"""erf and erfc for NumPy arrays (NumPy has none, and skylark uses no scipy): W. J. Cody's
rational approximations (Math. Comp. 23, 1969, 631-638; the SPECFUN routine CALERF, ACM TOMS
715), which approximate erf and erfc to at least 18 significant digits in exact arithmetic, so
in float64 the result is within a few ulps (tests/test_gelu.py measures it against math.erf
and math.erfc over the whole range, tails included).

Three intervals of y = |x|:
  y <= 0.46875:      erf(x) = x * R1(y**2)                 (erfc = 1 - erf: no cancellation)
  0.46875 < y <= 4:  erfc(y) = exp(-y**2) * R2(y)
  4 < y < 27.3:      erfc(y) = exp(-y**2) / y * (1/sqrt(pi) + R3(1/y**2) / y**2)
and erfc(y) = 0 from 27.3 on (below float64's smallest subnormal; Cody stops at 26.543, where
the result leaves the normal range, but the formula holds on into the subnormals). exp(-y**2)
is taken as exp(-s**2) * exp(-(y - s)(y + s)) with s = y rounded down to a multiple of 1/16,
so that the rounding of y**2 is not amplified by the exponential (Cody's device).
erf(-x) = -erf(x) and erfc(-x) = 2 - erfc(x).

float32 inputs are computed in float64 and rounded once to float32 (the result's dtype is the
input's).
"""

from __future__ import annotations

import numpy as np

# Cody's coefficients (CALERF), highest-order term last as there
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
SQRPI = 5.6418958354775628695e-1  # 1 / sqrt(pi)
THRESH = 0.46875
XBIG = 27.3  # erfc(27.3) ~ 1e-325: below float64's smallest subnormal (5e-324)


def _small(y: np.ndarray) -> np.ndarray:
    """erf(y) / y for |y| <= THRESH (the caller multiplies by y, keeping its sign)."""
    ysq = y * y
    num, den = _A[4] * ysq, ysq
    for i in range(3):
        num = (num + _A[i]) * ysq
        den = (den + _B[i]) * ysq
    return (num + _A[3]) / (den + _B[3])


def _exp_minus_square(y: np.ndarray) -> np.ndarray:
    """exp(-y**2) without amplifying the rounding of y**2 (Cody's split at 1/16ths)."""
    s = np.trunc(y * 16) / 16
    return np.exp(-s * s) * np.exp(-(y - s) * (y + s))


def _mid(y: np.ndarray) -> np.ndarray:
    """erfc(y) for THRESH < y <= 4."""
    num, den = _C[8] * y, y
    for i in range(7):
        num = (num + _C[i]) * y
        den = (den + _D[i]) * y
    return _exp_minus_square(y) * ((num + _C[7]) / (den + _D[7]))


def _tail(y: np.ndarray) -> np.ndarray:
    """erfc(y) for 4 < y < XBIG."""
    ysq = 1 / (y * y)
    num, den = _P[5] * ysq, ysq
    for i in range(4):
        num = (num + _P[i]) * ysq
        den = (den + _Q[i]) * ysq
    r = ysq * (num + _P[4]) / (den + _Q[4])
    return _exp_minus_square(y) * ((SQRPI - r) / y)


def _erfc_abs(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(erfc(y) for y > THRESH, the mask of those y) on float64 y = |x| (nan stays nan)."""
    out = np.zeros_like(y)
    big = ~(y <= THRESH)  # nan is "big": it goes through _mid and stays nan
    mid = big & ~(y > 4)
    tail = big & (y > 4) & (y < XBIG)
    out[mid] = _mid(y[mid])
    out[tail] = _tail(y[tail])
    return out, big


def _as_float(x) -> tuple[np.ndarray, np.dtype]:
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    return x.astype(np.float64, copy=False), dtype


def erf(x) -> np.ndarray:
    """The error function 2/sqrt(pi) * int_0^x exp(-t**2) dt, element-wise; same dtype as `x`
    (integers: float64)."""
    x, dtype = _as_float(x)
    y = np.abs(x)
    tail, big = _erfc_abs(y)
    small = ~big
    out = np.empty_like(x)
    out[small] = x[small] * _small(y[small])
    # erf = 1 - erfc, written (0.5 - erfc) + 0.5 as Cody does; odd in x
    out[big] = np.copysign((0.5 - tail[big]) + 0.5, x[big])
    return out.astype(dtype, copy=False)


def erfc(x) -> np.ndarray:
    """The complementary error function 1 - erf(x), accurate where it is tiny (large x),
    element-wise; same dtype as `x` (integers: float64)."""
    x, dtype = _as_float(x)
    y = np.abs(x)
    tail, big = _erfc_abs(y)
    small = ~big
    out = np.empty_like(x)
    out[small] = 1 - x[small] * _small(y[small])
    out[big] = np.where(x[big] < 0, 2 - tail[big], tail[big])
    return out.astype(dtype, copy=False)


__all__ = ["erf", "erfc"]
