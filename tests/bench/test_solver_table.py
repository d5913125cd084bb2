"""The peer-grid bench: our defaults against the published forms (reference rows), exactly as in
docs/results/gmm_solvers.md (same mixture, same 64 seeds), plus two mixtures the defaults were not chosen on
(docs/results/solver_defaults.md measures twelve)."""

from __future__ import annotations

import pytest

from qac.bench.solver_table import TARGET_NFES, empirical_order, peer_markdown, peer_rows, row_errors

ROWS = peer_rows(["ipndm_v", "dpmpp_3m"])
ERRS = row_errors(ROWS, TARGET_NFES)
PUB = {r.reference_of: ERRS[r.label] for r in ROWS if r.reference_of}


@pytest.mark.parametrize("name", ["ipndm_v", "dpmpp_3m"])
@pytest.mark.parametrize("nfe", TARGET_NFES)
def test_default_never_worse_than_published(name, nfe):
    assert ERRS[name][nfe] <= PUB[name][nfe] * (1 + 1e-12)


@pytest.mark.parametrize("dim,seed", [(8, 0), (16, 2)])
def test_default_never_worse_than_published_on_other_mixtures(dim, seed):
    """(8, 0) and (16, 2) are where the earlier defaults lost by 68% (ipndm_v, NFE 20) and 15x (dpmpp_3m, NFE 20)."""
    errs = row_errors(ROWS, TARGET_NFES, dim=dim, seed=seed, batch=32)
    pub = {r.reference_of: errs[r.label] for r in ROWS if r.reference_of}
    for name in ("ipndm_v", "dpmpp_3m"):
        assert all(errs[name][n] <= pub[name][n] * (1 + 1e-12) for n in TARGET_NFES), name


def test_default_beats_published_where_the_grid_is_fine():
    """At NFE 128 both defaults use the exact weights, which keep their orders; the published ones do not."""
    errs = row_errors(ROWS, [128], batch=32)
    pub = {r.reference_of: errs[r.label] for r in ROWS if r.reference_of}
    assert errs["ipndm_v"][128] < 0.5 * pub["ipndm_v"][128]
    assert errs["dpmpp_3m"][128] < 0.8 * pub["dpmpp_3m"][128]


def test_reference_rows_render_as_ratios():
    text = peer_markdown(ROWS, ERRS)
    assert "ipndm_v (diff-sampler, published)" in text and "| 1.000 |" in text


def test_empirical_order_of_a_power_law():
    errs = {n: 3.0 * n**-4 for n in (64, 128, 256, 512)}
    assert abs(empirical_order(errs) - 4.0) < 1e-12
    assert empirical_order({64: 1.0}) is None
