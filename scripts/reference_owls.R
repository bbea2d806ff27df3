# Reference fits for offsets (issue 28): tests/reference/owls.json and its data examples/data/owls.csv.
# Run from the repository root:
#   apt-get install r-base-core r-cran-glmmtmb r-cran-lme4    # Debian; the tests never call R
#   Rscript scripts/reference_owls.R
# glmmTMB's Owls (Roulin & Bersier 2007, as in Zuur et al. 2009): calls of owl chicks (SiblingNegotiation)
# in 599 recordings at 27 nests, by the parent's sex (SexParent) and the feeding treatment (FoodTreatment);
# the number of chicks (BroodSize) is the exposure: log(BroodSize) enters with coefficient 1. The models are
# the ones glmmTMB's vignette fits, with the data's names shortened:
#   poisson: calls ~ food * sex + offset(log_brood) + (1 | nest)          (glmmTMB and lme4::glmer agree)
#   zinb:    the same, NB2 with zi ~ 1                                      (issue 27's family)
# Maximum likelihood throughout.
suppressMessages({library(glmmTMB); library(lme4)})
data(Owls, package = "glmmTMB")
d <- data.frame(nest = as.character(Owls$Nest), food = as.character(Owls$FoodTreatment),
                sex = as.character(Owls$SexParent), arrival = Owls$ArrivalTime, brood = Owls$BroodSize,
                log_brood = round(log(Owls$BroodSize), 12), calls = Owls$SiblingNegotiation)
write.csv(d, "examples/data/owls.csv", row.names = FALSE, quote = FALSE)
num <- function(x) formatC(x, digits = 12, format = "g")
block <- function(table) {
  if (is.null(table)) return("{}")
  paste0("{", paste(sprintf('"%s": {"estimate": %s, "se": %s}', rownames(table), num(table[, "Estimate"]),
                            num(table[, "Std. Error"])), collapse = ", "), "}")
}
fits <- c()
formula <- calls ~ food * sex + offset(log_brood) + (1 | nest)
m <- glmmTMB(formula, family = poisson, data = d)
print(summary(m))
g <- glmer(formula, family = poisson, data = d)
print(summary(g))
s <- summary(m)$coefficients
fits <- c(fits, sprintf('"poisson": {"family": "poisson", "formula": "calls ~ food * sex + offset(log_brood) + (1 | nest)", "fixef": %s, "fixef_glmer": %s, "sd_nest": %s, "sd_nest_glmer": %s, "logLik": %s}',
                        block(s$cond), block(summary(g)$coefficients),
                        num(attr(VarCorr(m)$cond$nest, "stddev")[[1]]), num(attr(VarCorr(g)$nest, "stddev")[[1]]),
                        num(as.numeric(logLik(m)))))
m <- glmmTMB(formula, zi = ~ 1, family = nbinom2, data = d)
print(summary(m))
s <- summary(m)$coefficients
fits <- c(fits, sprintf('"zinb": {"family": "nbinom2", "formula": "calls ~ food * sex + offset(log_brood) + (1 | nest)", "ziformula": "~1", "fixef": %s, "zi": %s, "sd_nest": %s, "phi": %s, "logLik": %s}',
                        block(s$cond), block(s$zi), num(attr(VarCorr(m)$cond$nest, "stddev")[[1]]),
                        num(sigma(m)), num(as.numeric(logLik(m)))))
header <- sprintf('"source": "glmmTMB %s, lme4 %s (R %s), glmmTMB::Owls, maximum likelihood; scripts/reference_owls.R"',
                  packageVersion("glmmTMB"), packageVersion("lme4"), getRversion())
writeLines(paste0("{", header, ", ", paste(fits, collapse = ", "), "}"), "tests/reference/owls.json")
