"""The fit's draws as the shared numpy linear predictor takes them (stangen.compiler.new_rows): each draw's
intercept, coefficients, group deviations and group-level effects, for any encoded rows. Used by predictions
(stangen.results.predict) and by quantities computed from the rows (R², stangen.results.multilevel)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from ..compiler.new_rows import Coefficients, EncodedRows, inverse_link
from ..compiler.new_rows import linear_predictor as shared_linear_predictor

if TYPE_CHECKING:
    from ..fitting import Fit


def thinned(fit: "Fit", budget: int):
    """The fit with every k-th draw of each chain when draws × rows exceed `budget` (what the linear predictor
    and the family's parameters read of it: posterior, description, program); else the fit itself."""
    draws = fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    step = int(np.ceil(draws * fit.program.data.n / budget))
    if step <= 1:
        return fit
    return SimpleNamespace(posterior=fit.posterior.isel(draw=slice(None, None, step)), description=fit.description,
                           program=fit.program)


def flat_draws(values: np.ndarray) -> np.ndarray:
    """(chain, draw, ...) → (draws, ...)."""
    return values.reshape(-1, *values.shape[2:])


def linear_predictor(fit: "Fit", rows: EncodedRows, new_groups: str, rng: np.random.Generator | None,
                     group_effects: bool = True) -> np.ndarray:
    """The linear predictor of every row, per draw: (draws, rows). `group_effects=False`: the fixed part only
    (intercept, coefficients, group-level predictors' effects; every group deviation 0)."""
    d, post = fit.description, fit.posterior
    S = post.sizes["chain"] * post.sizes["draw"]
    beta = np.concatenate([flat_draws(post[f"beta_{t.stan}"].values).reshape(S, -1) for t in d.terms], axis=1) \
        if d.terms else np.zeros((S, 0))
    coefficients = Coefficients(
        intercept=flat_draws(post["Intercept"].values) if d.intercept else np.zeros(S), beta=beta,
        deviations={lv.name: _deviations(fit, lv, rows, new_groups, rng) * (1.0 if group_effects else 0.0)
                    for lv in d.levels},
        effects={e.name: flat_draws(post[e.name].values).reshape(S, -1)
                 for lv in d.levels for c in lv.coefficients for e in c.effects})
    return shared_linear_predictor(d, rows, coefficients)


def _deviations(fit: "Fit", lv, rows: EncodedRows, new_groups: str, rng) -> np.ndarray:
    """Each group's deviations u per draw, (draws, groups, coefficients): fitted groups' from the draws, new
    groups' drawn from the fitted distribution ('sample') or 0 ('population')."""
    post, S = fit.posterior, fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    known = len(fit.program.data.labels[lv.name])
    n_new = len(rows.new_labels.get(lv.name, []))
    q = lv.n_coef
    u = flat_draws(post[f"u_{lv.stan}"].values).reshape(S, known, q)
    if n_new:
        new = np.zeros((S, n_new, q))
        if new_groups == "sample":
            sd = flat_draws(post[f"sd_{lv.stan}"].values).reshape(S, q)
            z = rng.standard_normal((S, n_new, q))
            if lv.kind == "correlated":
                corr = flat_draws(post[f"corr_{lv.stan}"].values).reshape(S, q, q)
                z = np.einsum("sij,snj->sni", _factor(corr), z)
            new = z * sd[:, None, :]
        u = np.concatenate([u, new], axis=1)
    return u


def _factor(corr: np.ndarray) -> np.ndarray:
    """A square root of each correlation matrix: Cholesky, or through the eigenvalues clipped at 0 when
    rounding (a correlation near ±1 read from a CSV) left one not quite positive definite."""
    try:
        return np.linalg.cholesky(corr)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(corr)
        return vectors * np.sqrt(np.clip(values, 0, None))[:, None, :]


def aux_draws(fit: "Fit", rows: EncodedRows, new_groups: str = "population",
              rng: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """The family's own parameters per draw, shaped to broadcast against (draws, rows): sigma per row with
    `residuals: sd_by`, a sub-model's parameter per row (its new groups' effects as `new_groups` says); a
    vector (cutpoints) as (draws, length)."""
    post, S = fit.posterior, fit.posterior.sizes["chain"] * fit.posterior.sizes["draw"]
    d = fit.description
    rng = rng if rng is not None else np.random.default_rng(0)
    out = {}
    for aux in d.family.aux:
        sub = d.submodel(aux)
        if sub is not None:
            beta = np.concatenate([flat_draws(post[t.param].values).reshape(S, -1) for t in sub.terms], axis=1) \
                if sub.terms else np.zeros((S, 0))
            coefficients = Coefficients(
                intercept=flat_draws(post[sub.intercept_name].values), beta=beta,
                deviations={lv.name: _deviations(fit, lv, rows, new_groups, rng) for lv in sub.levels}, effects={})
            out[aux.name] = inverse_link(sub.link, shared_linear_predictor(d, rows, coefficients, submodel=sub))
            continue
        values = flat_draws(post[aux.name].values)
        if aux.size:
            out[aux.name] = values.reshape(S, -1)
        elif values.ndim == 2:  # sigma per value of sd_by
            out[aux.name] = values[:, rows.sigma_group]
        else:
            out[aux.name] = values[:, None]
    return out
