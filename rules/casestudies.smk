rule case_study:
    """results/<case>.pdf, .png, .csv: one of the paper's case studies (config `case_studies`),
    from the tables of its (derived) studies: Figures 3, 15 (Algorithm 1), 4, 16 (Algorithms 2,
    2.1), 5 (SGD vs SAM) and 6 (SAM's rho by CKA)."""
    input:
        unpack(case_inputs),
    output:
        pdf="results/{case}.pdf",
        png=report("results/{case}.png", caption="../report/case_study.rst", category="Case studies",
                   subcategory="{case}"),
        table=report("results/{case}.csv", caption="../report/case_study.rst", category="Case studies",
                     subcategory="{case}"),
    params:
        case=lambda wc: case_study(wc.case).as_dict(),
        dense=lambda wc: case_dense_index(wc.case),
        panels=lambda wc: case_panel_info(wc.case),
    wildcard_constraints:
        case=CASE_PATTERN,
    conda:
        ENV
    log:
        f"{LOGS}/case_study/{{case}}.log",
    script:
        "../workflow_scripts/case_study.py"
