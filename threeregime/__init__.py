"""threeregime: the three-regime model of network pruning as a Snakemake workflow."""
