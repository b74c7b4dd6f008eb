# The README's demo gallery (docs/gallery/*.png, committed). Regenerate it after the demo with
#   snakemake --cores 2 gallery --configfile presets/demo.yaml
# The Snakemake report needs no rule: `snakemake --report report.html` collects every output
# marked report(...) in the other rule files (captions in report/*.rst).
from threeregime.report import gallery_sources


rule gallery:
    """Copy the default studies' phase diagrams and the LMC curves of the first study's top-left
    cell to docs/gallery/ (README's gallery); no output, so it always runs."""
    localrule: True
    input:
        unpack(lambda wc: gallery_sources([study(s) for s in config.get("default_studies", [])])),
    params:
        folder="docs/gallery",
    conda:
        ENV
    log:
        f"{LOGS}/gallery.log",
    script:
        "../workflow_scripts/gallery.py"
