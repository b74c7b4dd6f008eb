"""Every shell command in README.md's bash blocks works as written.

The commands run (tests/readme_commands.py) in a temporary copy of the repository whose
presets/demo.yaml is the tiny study already computed by the session's `tiny_grid` (its
results and Snakemake metadata are copied in), so the demo's commands run for real in seconds:
the demo itself (nothing left to do), the report, the gallery, progress, unlock. Commands on
the reference config would train for days: they run as dry runs, on a config.yaml whose grids
are cut to their first and last values (the commands, targets, profiles and presets are what
is checked here; the full grids' plans are pinned in tests/test_workflow.py). The environment
setup and the test-suite command must be the ones .ci/run executes on every CI run.
"""

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from readme_commands import block_commands, readme_commands

README = (ROOT / "README.md").read_text()


def _normal(argv):
    return [w for w in argv if w != "-q"]


def ci_commands() -> list[list[str]]:
    """The commands .ci/run executes (one per line), without -q."""
    out = []
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "set ", "cd ", "export ")):
            out.append(_normal(line.split()))
    return out


def is_setup(argv) -> bool:
    return argv[:3] == ["python3", "-m", "venv"] or argv[0].endswith("/pip") or argv[1:3] == ["-m", "pytest"]


def test_commands_are_parsed_as_bash_would_split_them():
    block = ("# a comment\nexport A=1   # trailing comment\nB=2 snakemake --profile p   # note\n"
             "python3 -m venv .venv && PATH=$PWD/x:$PATH snakemake t --forcerun $(python -m m --x 1) 'a b'\n")
    cmds = block_commands(block)
    assert [c.argv for c in cmds] == [["snakemake", "--profile", "p"], ["python3", "-m", "venv", ".venv"],
                                      ["snakemake", "t", "--forcerun", "__SUBSTITUTION_0__", "a b"]]
    assert [c.env for c in cmds] == [{"A": "1", "B": "2"}, {"A": "1"}, {"A": "1", "PATH": "$PWD/x:$PATH"}]
    assert cmds[2].substitutions["__SUBSTITUTION_0__"]["argv"] == ["python", "-m", "m", "--x", "1"]
    indented = "Text\n\n  ```bash\n  snakemake --unlock\n  ```\n"
    assert [c.argv for c in readme_commands(indented)] == [["snakemake", "--unlock"]]


def test_setup_and_test_commands_are_what_ci_runs():
    setup = [c for c in readme_commands(README) if is_setup(c.argv)]
    assert setup, "README lost its setup commands"
    ci = ci_commands()
    for c in setup:
        assert _normal(c.argv) in ci, f"README command {' '.join(c.argv)!r} is not run by .ci/run"


def _repo_copy(dest, tiny_grid):
    """The repository's files (tracked and new, not ignored), its reference grids cut down, and the
    tiny grid as presets/demo.yaml with its results."""
    from test_workflow import TINY

    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for f in filter(None, files):
        src = ROOT / f
        if src.is_file() or src.is_symlink():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f, follow_symlinks=False)
    cfg = yaml.safe_load((dest / "config.yaml").read_text())
    for study in cfg["studies"].values():
        for kind in ("temperature", "load"):
            values = study[kind]["values"]
            study[kind]["values"] = values[:1] + values[-1:] if len(values) > 1 else values
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (dest / "presets" / "demo.yaml").write_text(yaml.safe_dump(TINY))
    folder, _ = tiny_grid
    for part in ("results", ".snakemake"):
        shutil.copytree(folder / part, dest / part, symlinks=True)
    # The advice example starts from the case-study demo's 12-epoch checkpoint; stand the tiny
    # grid's dense checkpoint (the same digits PreResNet-8, narrower) in for it, at its path.
    out = subprocess.run([sys.executable, "-m", "threeregime.progress", "--configfile", "presets/demo_case_studies.yaml",
                          "--study", "cs_epochs", "--where", "12", "0.02", "--seed", "1", "--file", "dense"],
                         cwd=dest, capture_output=True, text=True, check=True).stdout.strip()
    (dest / out).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(next((dest / "results" / "dense").glob("*/seed1/epoch2.pt")), dest / out)


@pytest.mark.slow
def test_every_readme_command_works(tiny_grid, tmp_path):
    commands = [c for c in readme_commands(README) if not is_setup(c.argv)]
    repo = tmp_path / "repo"
    _repo_copy(repo, tiny_grid)
    (tmp_path / "commands.json").write_text(json.dumps([c.__dict__ for c in commands]))
    subprocess.run([sys.executable, str(ROOT / "tests" / "readme_commands.py"), str(repo),
                    str(tmp_path / "commands.json"), str(tmp_path / "results.json")], check=True, timeout=600)
    results = json.loads((tmp_path / "results.json").read_text())
    failed = [f"$ {r['line']}\n(exit {r['rc']})\n{r['output'][-3000:]}" for r in results if r["rc"] != 0]
    assert not failed, "README commands failed:\n\n" + "\n\n".join(failed)

    for r in results:
        print(f"{r['seconds']:6.1f} s  {r['line']}")  # shown with pytest -s: where the time goes
    by_line = {r["line"]: r for r in results}
    for r in results:
        if r["argv"][0] == "snakemake" and "--report" not in r["argv"] and "--unlock" not in r["argv"]:
            assert "Job stats" in r["output"] or "Nothing to be done" in r["output"], r["output"][-2000:]
    # the data download, the forced cell (its path printed by the progress command), each profile
    forced = next(r for r in results if "--forcerun" in r["argv"])
    path = forced["argv"][forced["argv"].index("--forcerun") + 1]
    assert path.startswith("results/cells/cifar10_preresnet20w1_sgd_bs64_e160-") and path.endswith(
        "/seed1/epoch160/uniform_d0.05/pruned.pt")
    # the report: captions rendered with the study's name, the workflow's description
    report = (repo / "report.html").read_text(errors="replace")
    for text in ("threeregime: the three-regime model of network pruning", "Phase diagram of study", "tiny"):
        assert text in report, text
    # the gallery copies the (tiny) default study's figures
    gallery = repo / "docs" / "gallery"
    assert (gallery / "tiny_phase.png").read_bytes() == (repo / "results/studies/tiny/phase.png").read_bytes()
    # ... and the LMC curves of its top-left cell as drawn: the hottest temperature (1 epoch), density 10 %
    top_left = next(repo.glob("results/cells/*/seed1/epoch1/uniform_d0.1/*/lmc_curves_*.png"))
    assert (gallery / "lmc_curves.png").read_bytes() == top_left.read_bytes()
    # progress on the finished grid
    prog = next(r for r in results if r["argv"][:3] == ["python", "-m", "threeregime.progress"])
    assert "tiny: epochs x density, 2 x 2 cells\n  cells: 4/4 done, 0 running, 0 missing" in prog["output"]
    assert (repo / "results" / "progress" / "tiny.png").exists()
    assert len(by_line) >= 10
