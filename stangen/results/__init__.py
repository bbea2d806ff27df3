"""Stage 5: a Fit → what people read: tables (tables.py), convergence checks (checks.py), multilevel
quantities (multilevel.py), plots (plots.py), model comparison (compare.py) and the report (report.py)."""
