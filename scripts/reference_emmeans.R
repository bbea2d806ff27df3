# Reference marginal means for issue 29 (tests/reference/emmeans.json): emmeans on
#   exam: lmer(normexam ~ standLRT + intake + (1 | school)): pairwise contrasts of intake
#   cbpp: glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), binomial): the periods' means on
#         the response scale (probability per animal), type = "response"
# Run from the repository root (the tests never call R):
#   apt-get install r-base-core r-cran-lme4 r-cran-emmeans
#   Rscript scripts/reference_emmeans.R
suppressMessages({library(lme4); library(emmeans)})
num <- function(x) formatC(x, digits = 12, format = "g")
rows <- function(table, label, estimate, se) {
  paste0("{", paste(sprintf('"%s": {"estimate": %s, "se": %s}', table[[label]], num(table[[estimate]]),
                            num(table[[se]])), collapse = ", "), "}")
}
exam <- read.csv("examples/data/exam.csv")
m1 <- lmer(normexam ~ standLRT + intake + (1 | school), exam)
e1 <- emmeans(m1, pairwise ~ intake)
means1 <- as.data.frame(e1$emmeans)
contrasts1 <- as.data.frame(e1$contrasts)
cbpp <- read.csv("examples/data/cbpp.csv")
cbpp$period <- factor(cbpp$period)
m2 <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial)
means2 <- as.data.frame(emmeans(m2, ~ period, type = "response"))
writeLines(sprintf(paste0('{"source": "emmeans %s, lme4 %s (R %s); scripts/reference_emmeans.R", ',
                          '"exam": {"means": %s, "contrasts": %s}, "cbpp": {"means": %s}}'),
                   packageVersion("emmeans"), packageVersion("lme4"), getRversion(),
                   rows(means1, "intake", "emmean", "SE"), rows(contrasts1, "contrast", "estimate", "SE"),
                   rows(means2, "period", "prob", "SE")),
           "tests/reference/emmeans.json")
