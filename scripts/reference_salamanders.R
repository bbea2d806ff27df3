# Reference fits for the zero-inflated, hurdle and dispersion sub-models of issue 27
# (tests/reference/salamanders.json) and their data (examples/data/salamanders.csv). Run from the repository root:
#   apt-get install r-base-core r-cran-glmmtmb r-cran-lme4    # Debian; the tests never call R
#   Rscript scripts/reference_salamanders.R
# glmmTMB's Salamanders (Price et al. 2016): salamander counts at 23 streams (site), some affected by
# mountaintop mining (mined), for 7 species/life stages (spp); 387 of 644 counts are 0. The models are the
# ones glmmTMB's own vignette fits: count ~ spp + mined + (1 | site) with
#   zip:  Poisson, zi ~ 1;               zinb: NB2, zi ~ mined;
#   hp:   truncated Poisson, zi ~ mined (a hurdle: zi is then P(count = 0));
#   hnb:  truncated NB2, zi ~ mined;
# and the same with one zero probability for all rows (zi ~ 1): zinb1, hp1, hnb1;
# and lme4's sleepstudy with dispformula = ~ Days (glmmTMB models log sigma^2 there: halve to compare with a
# log-sigma sub-model). Maximum likelihood throughout.
suppressMessages({library(glmmTMB); library(lme4)})
data(Salamanders, package = "glmmTMB")
d <- Salamanders
write.csv(data.frame(site = as.character(d$site), mined = as.character(d$mined), cover = round(d$cover, 10),
                     sample = d$sample, DOP = round(d$DOP, 10), Wtemp = round(d$Wtemp, 10),
                     DOY = round(d$DOY, 10), spp = as.character(d$spp), count = d$count),
          "examples/data/salamanders.csv", row.names = FALSE, quote = FALSE)
num <- function(x) formatC(x, digits = 12, format = "g")
block <- function(table) {
  if (is.null(table)) return("{}")
  paste0("{", paste(sprintf('"%s": {"estimate": %s, "se": %s}', rownames(table), num(table[, "Estimate"]),
                            num(table[, "Std. Error"])), collapse = ", "), "}")
}
describe <- function(name, m, family, zi) {
  s <- summary(m)$coefficients
  sd_site <- attr(VarCorr(m)$cond$site, "stddev")[[1]]
  phi <- if (family %in% c("nbinom2", "truncated_nbinom2")) num(sigma(m)) else "null"
  sprintf('"%s": {"family": "%s", "formula": "count ~ spp + mined + (1 | site)", "ziformula": "%s", "fixef": %s, "zi": %s, "sd_site": %s, "phi": %s, "logLik": %s}',
          name, family, zi, block(s$cond), block(s$zi), num(sd_site), phi, num(as.numeric(logLik(m))))
}
fits <- c()
models <- list(zip = list(poisson, ~ 1, "poisson"), zinb = list(nbinom2, ~ mined, "nbinom2"),
               hp = list(truncated_poisson, ~ mined, "truncated_poisson"),
               hnb = list(truncated_nbinom2, ~ mined, "truncated_nbinom2"),
               zinb1 = list(nbinom2, ~ 1, "nbinom2"), hp1 = list(truncated_poisson, ~ 1, "truncated_poisson"),
               hnb1 = list(truncated_nbinom2, ~ 1, "truncated_nbinom2"))
for (name in names(models)) {
  spec <- models[[name]]
  m <- glmmTMB(count ~ spp + mined + (1 | site), zi = spec[[2]], family = spec[[1]], data = d)
  print(summary(m))
  fits <- c(fits, describe(name, m, spec[[3]], deparse(spec[[2]])))
}
data(sleepstudy, package = "lme4")
m <- glmmTMB(Reaction ~ Days + (Days | Subject), dispformula = ~ Days, data = sleepstudy)
print(summary(m))
s <- summary(m)$coefficients
vc <- attr(VarCorr(m)$cond$Subject, "stddev")
fits <- c(fits, sprintf('"sleepstudy_sigma": {"family": "gaussian", "formula": "Reaction ~ Days + (Days | Subject)", "dispformula": "~Days", "disp_scale": "log sigma^2", "fixef": %s, "disp": %s, "sd_Subject": {"(Intercept)": %s, "Days": %s}, "cor_Subject": %s, "logLik": %s}',
                        block(s$cond), block(s$disp), num(vc[[1]]), num(vc[[2]]),
                        num(attr(VarCorr(m)$cond$Subject, "correlation")[1, 2]), num(as.numeric(logLik(m)))))
header <- sprintf('"source": "glmmTMB %s (R %s), glmmTMB::Salamanders and lme4::sleepstudy, maximum likelihood; scripts/reference_salamanders.R"',
                  packageVersion("glmmTMB"), getRversion())
writeLines(paste0("{", header, ", ", paste(fits, collapse = ", "), "}"), "tests/reference/salamanders.json")
