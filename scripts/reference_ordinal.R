# Reference fit for the cumulative (ordinal) example (tests/reference/soup.json) and its data
# (examples/data/soup.csv). Run from the repository root:
#   apt-get install r-base-core r-cran-ordinal    # Debian; the tests never call R
#   Rscript scripts/reference_ordinal.R
# ordinal's soup data (Christensen 2019): 185 respondents rate their sureness that a soup sample is the
# reference or a test product, 1 (sure it is the reference) … 6 (sure it is the test product), about 10
# samples each. SURENESS ~ PROD + GENDER + (1 | RESP), cumulative logit, fitted by Laplace (clmm).
suppressMessages({library(ordinal)})
data(soup, package = "ordinal")
d <- soup
write.csv(data.frame(RESP = as.integer(as.character(d$RESP)), PROD = d$PROD, GENDER = d$GENDER,
                     SURENESS = as.integer(as.character(d$SURENESS))),
          "examples/data/soup.csv", row.names = FALSE, quote = FALSE)
num <- function(x) formatC(x, digits = 12, format = "g")
m <- clmm(SURENESS ~ PROD + GENDER + (1 | RESP), data = d, link = "logit", nAGQ = 1)
print(summary(m))
s <- summary(m)$coefficients
se <- s[, "Std. Error"]
beta <- m$beta
cuts <- m$alpha
obj <- function(values) paste(sprintf('"%s": {"estimate": %s, "se": %s}', names(values), num(values),
                                      num(se[names(values)])), collapse = ", ")
header <- sprintf('"source": "ordinal %s clmm, Laplace (R %s), ordinal::soup; scripts/reference_ordinal.R"',
                  packageVersion("ordinal"), getRversion())
writeLines(sprintf('{%s, "fixef": {%s}, "cutpoints": {%s}, "sd_RESP": %s, "logLik": %s}', header, obj(beta),
                   obj(cuts), num(attr(VarCorr(m)$RESP, "stddev")[[1]]), num(as.numeric(logLik(m)))),
           "tests/reference/soup.json")
