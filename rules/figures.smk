rule phase_diagram:
    """A study's phase diagram (the four panels of Figure 2 on its own axes)."""
    input:
        "results/studies/{study}/cells.parquet",
    output:
        pdf="results/studies/{study}/phase.pdf",
        png=report("results/studies/{study}/phase.png", caption="../report/phase_diagram.rst",
                   category="{study}", subcategory="Phase diagram"),
    params:
        regimes=lambda wc: study(wc.study).regimes.as_dict(),
    conda:
        ENV
    log:
        f"{LOGS}/phase_diagram/{{study}}.log",
    script:
        "../workflow_scripts/phase_diagram.py"


rule paper_figure:
    """results/<figure>.pdf: a paper figure named in config `figures` (a study's phase diagram,
    or lines comparing studies such as Figure 13)."""
    input:
        unpack(figure_inputs),
    output:
        pdf="results/{figure}.pdf",
        png=report("results/{figure}.png", caption="../report/paper_figure.rst", category="Paper figures",
                   subcategory="{figure}"),
    params:
        spec=lambda wc: FIGURES[wc.figure],
    wildcard_constraints:
        figure=FIGURE_PATTERN,
    conda:
        ENV
    log:
        f"{LOGS}/paper_figure/{{figure}}.log",
    script:
        "../workflow_scripts/paper_figure.py"


rule lmc_curves:
    """Train error along the straight line between each pair of a cell's copies (LMC curves)."""
    input:
        f"{COPIES}/landscape_{{land}}.json",
    output:
        pdf=f"{COPIES}/lmc_curves_{{land}}.pdf",
        png=report(f"{COPIES}/lmc_curves_{{land}}.png", caption="../report/lmc_curves.rst", category="LMC curves",
                   subcategory="{prune}"),
    conda:
        ENV
    log:
        f"{LOGS}/lmc_curves/{{run}}/seed{{dseed}}/{{ckpt}}/{{prune}}/{{retrain}}/{{land}}.log",
    script:
        "../workflow_scripts/lmc_curves.py"
