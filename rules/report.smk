# The README's demo gallery (docs/gallery/*.png, committed). Regenerate it after the demo with
#   snakemake --cores 2 gallery --configfile presets/demo.yaml
# The Snakemake report needs no rule: `snakemake --report report.html` collects every output
# marked report(...) in the other rule files (captions in report/*.rst).


def gallery_sources(wc):
    """Each default study's phase diagram, and the LMC curves of the first study's top-left cell
    (hottest temperature, smallest load, first dense seed)."""
    from threeregime.report import gallery_sources as sources

    chosen = [study(s) for s in config.get("default_studies", [])]
    if not chosen:
        raise WorkflowError("gallery: config default_studies is empty; the gallery draws those studies")
    first = chosen[0]
    from threeregime.plots import temperature_order

    hottest = temperature_order(first.temperatures, first.temperature.hotter)[0]
    top_left = next(c for t, l, c in first.cells() if float(t) == hottest and l == min(first.loads))
    return sources(chosen, top_left)


rule gallery:
    """Copy the demo's figures to docs/gallery/ (README's gallery); no output, so it always runs."""
    localrule: True
    input:
        unpack(gallery_sources),
    params:
        folder="docs/gallery",
    conda:
        ENV
    log:
        f"{LOGS}/gallery.log",
    script:
        "../workflow_scripts/gallery.py"
