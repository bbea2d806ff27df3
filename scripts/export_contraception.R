# The Bangladesh contraception data (mlmRev::Contraception; Huq & Cleland 1990, as in Bates' lme4 book) as
# examples/data/contraception.csv, in the columns the usual formula reads:
#   glmer(use01 ~ age + age2 + urban01 + factor(livch) + (1 + urban01 | district), family = binomial)
# livch (living children) holds 0, 1, 2 and "3+": text that looks mostly numeric. Run from the repository root:
#   apt-get install r-base-core r-cran-mlmrev    # Debian; the tests never call R
#   Rscript scripts/export_contraception.R
suppressMessages(library(mlmRev))
data(Contraception)
d <- Contraception
write.csv(data.frame(woman = as.character(d$woman), district = as.character(d$district),
                     use01 = as.integer(d$use == "Y"), livch = as.character(d$livch), age = round(d$age, 10),
                     age2 = round(d$age^2, 10), urban01 = as.integer(d$urban == "Y")),
          "examples/data/contraception.csv", row.names = FALSE, quote = FALSE)
