"""Convergence checks with a verdict (pass / warn / fail) and concrete advice for each.

| check          | pass                      | warn                          | fail                         |
|----------------|---------------------------|-------------------------------|------------------------------|
| r_hat          | max rank-normalized split R-hat <= 1.01 (group effects: see below) | | > 1.01 (says if only the folded, spread part is) |
| ess_bulk       | min >= 100 per chain      | < 100 per chain               | < 10 per chain               |
| ess_tail       | min >= 100 per chain      | < 100 per chain               | < 10 per chain               |
| divergences    | none                      | up to 0.1% of draws           | more                         |
| treedepth      | no draw hit max_treedepth | some did (efficiency only)    |                              |
| e_bfmi         | every chain >= 0.3        | a chain < 0.3                 |                              |

R-hat and ESS are ArviZ's (Vehtari et al. 2021), over the population-level parameters, every group effect,
and lp__. The population parameters and lp__ must each be at most 1.01. The group effects are many (InstEval:
4,114), and the largest of many R-hats exceeds 1.01 by chance even when every chain mixes perfectly
(benchmarks/rhat_noise.py; rstan issue 812): among them at most 1% may exceed 1.01 (chance puts well under
0.1% there at 4 × 1000 draws, about 1% at 4 × 500), and none 1.05 (where brms and rstan warn). Fewer than 100
group effects get no allowance.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import pandas as pd

from .tables import describe_draws, group_effect_selectors

if TYPE_CHECKING:
    from ..fitting import Fit

RHAT_MAX = 1.01
# the group effects: the share of them that may exceed RHAT_MAX (chance, over many), and the bound none may
RHAT_GROUP_EFFECTS_SHARE = 0.01
RHAT_GROUP_EFFECTS_MAX = 1.05
ESS_PER_CHAIN_WARN = 100
ESS_PER_CHAIN_FAIL = 10
DIVERGENCE_WARN_SHARE = 0.001
EBFMI_MIN = 0.3
ORDER = {"pass": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # pass | warn | fail
    value: float
    message: str
    advice: str = ""


@dataclass
class ConvergenceReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=ORDER.__getitem__, default="pass")

    @property
    def ok(self) -> bool:
        return self.status != "fail"

    def to_dict(self) -> dict:
        return {"status": self.status, "checks": [asdict(c) for c in self.checks]}

    def text(self) -> str:
        lines = [f"convergence: {self.status.upper()}"]
        for c in self.checks:
            lines.append(f"  [{c.status:4}] {c.name:<12} {c.message}")
            if c.advice and c.status != "pass":
                lines.append(f"         {'':<12} advice: {c.advice}")
        return "\n".join(lines)

    def one_line(self) -> str:
        bad = [c for c in self.checks if c.status != "pass"]
        if not bad:
            return "convergence: pass (" + "; ".join(c.message for c in self.checks[:2]) + ")"
        return f"convergence: {self.status.upper()} — " + "; ".join(f"{c.name}: {c.message}" for c in bad)


def convergence(fit: "Fit") -> ConvergenceReport:
    effects = group_effect_selectors(fit)
    selectors = dict(fit.parameters()) | effects
    # every parameter's ESS and R-hat are those of the full summary (summary.csv), computed once per fit: on
    # InstEval's 8,000 group effects each computation takes 10–20 s
    table = fit.summary(group_effects=True)
    stats = fit.idata.sample_stats
    lp = stats["lp"].values if "lp" in stats else None
    if lp is not None:
        table = pd.concat([table, describe_draws(lp[..., None], ["lp__"], quantiles=())])

    def draws_of(name: str) -> np.ndarray:
        return lp if name == "lp__" else fit.draws_of(selectors[name])

    chains, n_draws = fit.idata.posterior.sizes["chain"], fit.idata.posterior.sizes["draw"]
    report = ConvergenceReport()
    report.checks.append(_rhat(table, draws_of, set(effects)))
    report.checks += [_ess(table, kind, chains) for kind in ("bulk", "tail")]
    report.checks.append(_divergences(stats, chains * n_draws))
    report.checks.append(_treedepth(stats, fit.info.get("settings", {}).get("max_treedepth", 10)))
    report.checks.append(_ebfmi(fit))
    return report


def _worst(table, column, largest: bool):
    values = table[column].dropna()
    if values.empty:
        return None, float("nan")
    name = values.idxmax() if largest else values.idxmin()
    return name, float(values[name])


def _rhat(table, draws_of, group_effects: set[str] = frozenset()) -> Check:
    name, value = _worst(table, "r_hat", largest=True)
    if name is None:
        return Check("r_hat", "warn", value, "R-hat cannot be computed (one chain, or constant draws)",
                     "run at least 4 chains: R-hat compares chains to detect ones that have not converged")
    r_hat = table["r_hat"].dropna()
    effects = r_hat[r_hat.index.isin(list(group_effects))]
    population = r_hat.drop(effects.index)  # and lp__
    above = effects[effects > RHAT_MAX]
    population_ok = bool(np.isfinite(value) and (population <= RHAT_MAX).all())
    if population_ok and (above <= RHAT_GROUP_EFFECTS_MAX).all():
        if above.empty:
            return Check("r_hat", "pass", value, f"max R-hat {value:.3f} ({name})")
        if len(above) <= RHAT_GROUP_EFFECTS_SHARE * len(effects):
            worst = population.idxmax() if len(population) else name
            return Check("r_hat", "pass", value,
                         f"max R-hat {r_hat[worst]:.3f} ({worst}); {len(above)} of {len(effects)} group effects "
                         f"above {RHAT_MAX} (largest {value:.3f}, {name}): within the "
                         f"{RHAT_GROUP_EFFECTS_SHARE:.0%} that chance gives among many")
        return Check(
            "r_hat", "fail", value,
            f"{len(above)} of {len(effects)} group effects have R-hat > {RHAT_MAX}: more than the "
            f"{RHAT_GROUP_EFFECTS_SHARE:.0%} chance gives among many (largest {value:.3f}, {name})",
            "run longer (more warmup and draws); if it persists, look at the level's sd and try the level's "
            "other `parameterization:`")
    if not population_ok and np.isfinite(value):
        name, value = population.idxmax(), float(population.max())  # a population parameter fails first
    # ArviZ's R-hat is the larger of the bulk (rank-normalized) and the folded one (|x - median|, the
    # spread); say which, because "chains in different places" and "tails not yet settled" differ
    bulk = float(az.rhat(draws_of(name), method="z_scale"))
    if np.isfinite(value) and bulk <= RHAT_MAX:
        return Check(
            "r_hat", "fail", value,
            f"max R-hat {value:.3f} ({name}) > {RHAT_MAX}: the chains agree on where it is (bulk R-hat "
            f"{bulk:.3f}) but not yet on its spread (folded R-hat; tail ESS {table.loc[name, 'ess_tail']:.0f})",
            "run more draws: tails converge slower than means, and over many group effects the largest "
            "folded R-hat needs more draws per chain to fall below 1.01")
    return Check("r_hat", "fail", value, f"max R-hat {value:.3f} ({name}) > {RHAT_MAX}: chains disagree",
                 "run longer (more warmup and draws); if it persists, look at the trace plot of "
                 f"{name} for a chain stuck elsewhere, and consider stronger priors on the sds")


def _ess(table, kind: str, chains: int) -> Check:
    name, value = _worst(table, f"ess_{kind}", largest=False)
    if name is None:
        return Check(f"ess_{kind}", "warn", value, f"{kind} ESS cannot be computed", "run more draws")
    per_chain = value / chains
    message = f"min {kind} ESS {value:.0f} ({name}; {per_chain:.0f} per chain)"
    advice = ("run more draws; if ESS stays low for the sds or group effects of a level, the level's effects "
              "are poorly identified: stronger priors or more data per group help")
    if per_chain < ESS_PER_CHAIN_FAIL:
        return Check(f"ess_{kind}", "fail", value, message + f" < {ESS_PER_CHAIN_FAIL} per chain", advice)
    if per_chain < ESS_PER_CHAIN_WARN:
        return Check(f"ess_{kind}", "warn", value, message + f" < {ESS_PER_CHAIN_WARN} per chain", advice)
    return Check(f"ess_{kind}", "pass", value, message)


def _divergences(stats, total: int) -> Check:
    count = int(stats["diverging"].values.sum()) if "diverging" in stats else 0
    message = f"{count} divergent transition{'s' if count != 1 else ''} of {total}"
    advice = ("raise adapt_delta (e.g. --adapt-delta 0.95 or 0.99); divergences in multilevel models usually "
              "come from a level with few groups or little data per group (a funnel between its sd and its "
              "effects): give that level's sd a tighter prior, or switch the level's parameterization")
    if count == 0:
        return Check("divergences", "pass", 0, message)
    status = "warn" if count <= DIVERGENCE_WARN_SHARE * total else "fail"
    return Check("divergences", status, count, message + " (estimates may be biased)", advice)


def _treedepth(stats, max_depth: int) -> Check:
    if "tree_depth" not in stats:
        return Check("treedepth", "pass", 0, "no tree depth recorded")
    hits = int((stats["tree_depth"].values >= max_depth).sum())
    if hits:
        return Check("treedepth", "warn", hits, f"{hits} transitions hit max_treedepth {max_depth} "
                     "(an efficiency problem, not a validity one)",
                     f"raise max_treedepth (e.g. --max-treedepth {max_depth + 2}), or rescale predictors so "
                     "coefficients are of similar size")
    return Check("treedepth", "pass", 0, f"no transition hit max_treedepth {max_depth}")


def _ebfmi(fit: "Fit") -> Check:
    if "energy" not in fit.idata.sample_stats:
        return Check("e_bfmi", "pass", float("nan"), "no energy recorded")
    values = np.atleast_1d(az.bfmi(fit.idata))
    low = [i + 1 for i, v in enumerate(values) if v < EBFMI_MIN]
    message = "E-BFMI per chain: " + ", ".join(f"{v:.2f}" for v in values)
    if low:
        return Check("e_bfmi", "warn", float(values.min()), message + f" (chain {', '.join(map(str, low))} "
                     f"< {EBFMI_MIN})", "the sampler explores the energy poorly: reparameterize the level whose sd "
                     "mixes slowly, or use stronger priors on the sds")
    return Check("e_bfmi", "pass", float(values.min()), message)


# -- per chain --------------------------------------------------------------------------------

def chains(fit: "Fit") -> pd.DataFrame:
    """One row per chain: where its time went (warmup and sampling seconds, as Stan reports them), how the
    sampler adapted (step size, mean tree depth), how much it computed (gradient evaluations while sampling,
    µs per gradient) and divergences. A slow chain shows here as many gradients (a small step size, deep
    trees: it adapted badly or met hard geometry) or as a high µs per gradient (a costlier log density)."""
    stats = fit.idata.sample_stats
    seconds = (fit.info or {}).get("chain_seconds") or []
    rows = []
    for k in range(stats.sizes["chain"]):
        chain = stats.isel(chain=k)
        gradients = int(chain["n_steps"].values.sum()) if "n_steps" in chain else 0
        spent = seconds[k] if k < len(seconds) else {}
        sampling = spent.get("sampling", np.nan)
        rows.append({"chain": k + 1, "warmup s": spent.get("warmup", np.nan), "sampling s": sampling,
                     "step size": float(chain["step_size"].values.mean()) if "step_size" in chain else np.nan,
                     "mean tree depth": float(chain["tree_depth"].values.mean()) if "tree_depth" in chain else np.nan,
                     "gradients": gradients,
                     "µs per gradient": 1e6 * sampling / gradients if gradients and np.isfinite(sampling) else np.nan,
                     "divergences": int(chain["diverging"].values.sum()) if "diverging" in chain else 0})
    return pd.DataFrame(rows).set_index("chain")
