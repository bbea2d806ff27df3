# InstEval (lme4::InstEval; Debian r-cran-lme4): 73,421 lecture ratings (y, 1-5) by 2,972 students (s) of
# 1,128 lecturers (d) in 14 departments (dept); service: the lecture is a service course of another
# department. Writes examples/data/insteval.csv.gz (s, d, dept, service, y) and the lme4 fit of
# y ~ service + (1 | s) + (1 | d) + (1 | dept) (REML and ML, with wall times) to tests/reference/insteval.json.
# Run from the repository root:
#   apt-get install r-base-core r-cran-lme4     # the tests never call R
#   Rscript scripts/reference_insteval.R
suppressMessages({library(lme4)})
data(InstEval, package = "lme4")
d <- InstEval
out <- data.frame(s = as.integer(as.character(d$s)), d = as.integer(as.character(d$d)),
                  dept = as.integer(as.character(d$dept)), service = as.integer(as.character(d$service)),
                  y = as.integer(d$y))
con <- gzfile("examples/data/insteval.csv.gz", "w")
write.csv(out, con, row.names = FALSE, quote = FALSE)
close(con)
num <- function(x) formatC(x, digits = 12, format = "g")
fit <- function(reml) {
  t0 <- Sys.time()
  m <- lmer(y ~ service + (1 | s) + (1 | d) + (1 | dept), data = out, REML = reml)
  seconds <- as.numeric(difftime(Sys.time(), t0, units = "secs"))
  cf <- summary(m)$coefficients
  vc <- as.data.frame(VarCorr(m))
  sds <- paste(sprintf('"sd_%s": %s', vc$grp, num(vc$sdcor)), collapse = ", ")
  sprintf('{"fixef": {"Intercept": {"estimate": %s, "se": %s}, "service": {"estimate": %s, "se": %s}}, %s, "seconds": %s}',
          num(cf[1, 1]), num(cf[1, 2]), num(cf[2, 1]), num(cf[2, 2]), sds, num(seconds))
}
header <- sprintf('"source": "lme4 %s lmer (R %s), lme4::InstEval, y ~ service + (1 | s) + (1 | d) + (1 | dept); scripts/reference_insteval.R"',
                  packageVersion("lme4"), getRversion())
writeLines(sprintf('{%s, "REML": %s, "ML": %s}', header, fit(TRUE), fit(FALSE)), "tests/reference/insteval.json")
