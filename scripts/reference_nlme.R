# Reference fits for the Blackmore example (tests/reference/blackmore.json) and its data
# (examples/data/blackmore.csv). Run from the repository root:
#   apt-get install r-base-core r-cran-nlme r-cran-cardata     # Debian; the tests never call R
#   Rscript scripts/reference_nlme.R
# The lecture's model: lme(log(exercise + 1) ~ age * group, random = ~ age | subject), without and with
# continuous-time AR(1) errors within subjects (corCAR1(form = ~ age | subject)), REML and ML.
suppressMessages({library(nlme); library(carData)})
data(Blackmore)
d <- Blackmore
d$log_exercise <- log(d$exercise + 1)
write.csv(data.frame(subject = d$subject, age = d$age, exercise = d$exercise, group = d$group,
                     log_exercise = round(d$log_exercise, 10)),
          "examples/data/blackmore.csv", row.names = FALSE, quote = FALSE)

num <- function(x) formatC(x, digits = 12, format = "g")
fit_json <- function(m) {
  fe <- summary(m)$tTable
  fixef <- paste(sprintf('"%s": {"estimate": %s, "se": %s}', rownames(fe), num(fe[, "Value"]),
                         num(fe[, "Std.Error"])), collapse = ", ")
  cov <- pdMatrix(m$modelStruct$reStruct[[1]]) * m$sigma^2  # VarCorr() prints correlations rounded
  sds <- sqrt(diag(cov))
  cor <- cov[1, 2] / (sds[1] * sds[2])
  phi <- if (is.null(m$modelStruct$corStruct)) "null" else
    num(coef(m$modelStruct$corStruct, unconstrained = FALSE))
  sprintf(paste0('{"fixef": {%s}, "sd_intercept": %s, "sd_age": %s, "cor_intercept_age": %s, ',
                 '"sigma": %s, "phi": %s, "logLik": %s}'),
          fixef, num(sds[1]), num(sds[2]), num(cor), num(m$sigma), phi, num(as.numeric(logLik(m))))
}
ctrl <- lmeControl(maxIter = 200, msMaxIter = 200, niterEM = 100)
out <- c()
for (method in c("REML", "ML")) {
  plain <- lme(log_exercise ~ age * group, random = ~ age | subject, data = d, method = method, control = ctrl)
  car1 <- update(plain, correlation = corCAR1(form = ~ age | subject))
  out <- c(out, sprintf('"%s": {"plain": %s, "car1": %s}', method, fit_json(plain), fit_json(car1)))
  if (method == "REML") print(summary(car1))
}
header <- sprintf('"source": "nlme %s (R %s), carData::Blackmore; scripts/reference_nlme.R"',
                  packageVersion("nlme"), getRversion())
writeLines(paste0("{", header, ", ", paste(out, collapse = ", "), "}"), "tests/reference/blackmore.json")
