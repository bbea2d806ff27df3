# Reference R² for issue 29 (tests/reference/r2.json): performance::r2_nakagawa on maximum-likelihood fits of
#   exam: lmer(normexam ~ standLRT + intake + (1 | school))            (gaussian, a 3-level factor)
#   cbpp: glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial)
# Run from the repository root (the tests never call R):
#   apt-get install r-base-core r-cran-lme4 r-cran-performance
#   Rscript scripts/reference_r2.R
suppressMessages({library(lme4); library(performance)})
num <- function(x) formatC(x, digits = 12, format = "g")
exam <- read.csv("examples/data/exam.csv")
m1 <- lmer(normexam ~ standLRT + intake + (1 | school), exam, REML = FALSE)
cbpp <- read.csv("examples/data/cbpp.csv")
cbpp$period <- factor(cbpp$period)
m2 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial)
r2 <- function(m) { r <- r2_nakagawa(m); sprintf('{"marginal": %s, "conditional": %s}', num(r$R2_marginal), num(r$R2_conditional)) }
writeLines(sprintf('{"source": "performance %s, lme4 %s (R %s), maximum likelihood; scripts/reference_r2.R", "exam": %s, "cbpp": %s}',
                   packageVersion("performance"), packageVersion("lme4"), getRversion(), r2(m1), r2(m2)),
           "tests/reference/r2.json")
