rule figure2:
    """The paper's Figure 2 for this study: test error, normalized test error, LMC, CKA."""
    input:
        PATHS.cells_summary(),
    output:
        pdf=PATHS.figure("pdf"),
        png=PATHS.figure("png"),
    params:
        regimes=config["regimes"],
        study=STUDY,
    conda:
        ENV
    log:
        f"{LOGS}/figure2.log",
    script:
        "../workflow_scripts/figure2.py"


rule figure2_default:
    """results/figure2.pdf: the figure of the configured study."""
    input:
        pdf=PATHS.figure("pdf"),
        png=PATHS.figure("png"),
    output:
        pdf="results/figure2.pdf",
        png="results/figure2.png",
    params:
        study=STUDY,
    conda:
        ENV
    log:
        "results/logs/figure2_default.log",
    script:
        "../workflow_scripts/publish.py"
