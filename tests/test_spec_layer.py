"""The spec layer and planning: the DAG of every reference figure and case study is built
without torch or matplotlib, and the repository's Python has no undefined names."""

import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from test_workflow import job_counts

# Snakemake itself imports pandas; the project's planning code imports none of the three
# (test_plan_of_imports_no_torch).
HEAVY = "torch,matplotlib"
PLANNING_FREE_OF = ["torch", "matplotlib", "pandas"]


def reference_targets() -> list[str]:
    with open(ROOT / "config.yaml") as f:
        config = yaml.safe_load(f)
    names = sorted(config.get("figures", {})) + sorted(config.get("case_studies", {}))
    return [f"results/{n}.pdf" for n in names]


def plan_without(tmp_path, *args):
    return subprocess.run([sys.executable, str(ROOT / "tests" / "plan_without.py"), HEAVY, "-s",
                           str(ROOT / "Snakefile"), "-d", str(tmp_path), "--cores", "1", "-n", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_refusing_an_import_is_seen(tmp_path):
    """The check can fail: a Snakefile that imports torch is refused."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text("import torch\nrule all:\n    output: 'x'\n    shell: 'touch x'\n")
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "plan_without.py"), HEAVY, "-s", str(snakefile),
                        "-d", str(tmp_path), "--cores", "1", "-n"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "planning must not import torch" in r.stdout + r.stderr


def test_every_reference_figure_and_case_study_plans_without_torch(tmp_path):
    targets = reference_targets()
    assert len(targets) == 15, targets  # 9 figures (Figure 14: translation) + 6 case studies in config.yaml
    r = plan_without(tmp_path, *targets)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    counts = job_counts(r.stdout)
    assert counts["paper_figure"] + counts.get("case_study", 0) == len(targets)


@pytest.mark.parametrize("preset", ["demo.yaml", "demo_case_studies.yaml", "adaptive_demo.yaml", "own_model.yaml",
                                    "translation_demo.yaml"])
def test_presets_plan_without_torch(tmp_path, preset):
    if preset == "own_model.yaml":  # its factory file is relative to the working directory
        import shutil

        shutil.copytree(ROOT / "examples", tmp_path / "examples")
    r = plan_without(tmp_path, "--configfile", str(ROOT / "presets" / preset))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "Job stats:" in r.stdout


def test_plan_of_imports_no_torch():
    code = ("import sys; sys.path.insert(0, 'tests'); from plan_without import _Refuse; "
            f"sys.meta_path.insert(0, _Refuse({PLANNING_FREE_OF!r})); "
            "from threeregime.plan import plan_of, read_config; p = plan_of(read_config([])); "
            "print(len(p.studies), len(p.cases))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_no_undefined_names_anywhere():
    """pyflakes' rules (ruff F, pinned in requirements.txt) over every Python file of the repository."""
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F", "--no-cache", "--exclude", ".venv",
                        str(ROOT)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-5000:] + r.stderr[-2000:]
