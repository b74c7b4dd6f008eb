rule prune:
    """Magnitude-prune every convolution of one dense checkpoint (the default choice of weights,
    read from the key: the rule has no params, as since its first version, so finished cells
    are not redone by Snakemake's params trigger)."""
    input:
        f"{RUN}/{{ckpt}}.pt",
    output:
        f"{CELL}/pruned.pt",
    wildcard_constraints:
        prune=PRUNE_DEFAULT_KEY,
    conda:
        ENV
    log:
        f"{LOGS}/prune/{{run}}/seed{{dseed}}/{{ckpt}}/{{prune}}.log",
    script:
        "../workflow_scripts/prune.py"


# Another choice of weights (prune.layers / prune.exclude): its key ends in a digest of it, and
# the job reads the choice from the plan's index.
use rule prune as prune_selected with:
    wildcard_constraints:
        prune=PRUNE_SELECTED_KEY,
    params:
        prune=lambda wc: INDEX.prune(wc.prune).as_dict(),
