"""Analysis of a run directory: tidy results, power-law fits with bootstrap intervals over items
and training seeds, GSM8K error taxonomy, the study's figures and tables (`python -m analysis RUN_DIR`)."""
