# Reference fit for the negative-binomial example (tests/reference/epilepsy.json) and its data
# (examples/data/epilepsy.csv). Run from the repository root:
#   apt-get install r-base-core r-cran-glmmtmb r-cran-brms    # Debian; the tests never call R
#   Rscript scripts/reference_glmmtmb.R
# brms's epilepsy seizure counts (Thall & Vail 1990): count ~ zAge + zBase * Trt + (1 | patient), NB2.
suppressMessages({library(glmmTMB)})
data(epilepsy, package = "brms")
d <- epilepsy
write.csv(data.frame(patient = d$patient, visit = d$visit, Trt = d$Trt, zAge = round(d$zAge, 10),
                     zBase = round(d$zBase, 10), count = d$count),
          "examples/data/epilepsy.csv", row.names = FALSE, quote = FALSE)
num <- function(x) formatC(x, digits = 12, format = "g")
fits <- c()
for (reml in c(FALSE, TRUE)) {
  m <- glmmTMB(count ~ zAge + zBase * Trt + (1 | patient), data = d, family = nbinom2, REML = reml)
  fe <- summary(m)$coefficients$cond
  fixef <- paste(sprintf('"%s": {"estimate": %s, "se": %s}', rownames(fe), num(fe[, "Estimate"]),
                         num(fe[, "Std. Error"])), collapse = ", ")
  sd_patient <- attr(VarCorr(m)$cond$patient, "stddev")[[1]]
  fits <- c(fits, sprintf('"%s": {"fixef": {%s}, "sd_patient": %s, "phi": %s, "logLik": %s}',
                          if (reml) "REML" else "ML", fixef, num(sd_patient), num(sigma(m)),
                          num(as.numeric(logLik(m)))))
  if (!reml) print(summary(m))
}
header <- sprintf('"source": "glmmTMB %s (R %s), brms::epilepsy; scripts/reference_glmmtmb.R"',
                  packageVersion("glmmTMB"), getRversion())
writeLines(paste0("{", header, ", ", paste(fits, collapse = ", "), "}"), "tests/reference/epilepsy.json")
