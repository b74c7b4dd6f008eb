from threeregime.configfiles import duplicate_keys


def test_duplicate_keys_name_file_and_lines(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a:\n  x: 1\n  y: 2\n  x: 3\nb: {z: 1}\nb: {z: 2}\nlist: [{k: 1}, {k: 2}]\n")
    found = duplicate_keys(str(p))
    assert sorted(found) == [f"{p}:4: key 'x' is written twice in one section (also on line 2); YAML keeps only the last "
                     "one: merge the two",
                     f"{p}:6: key 'b' is written twice in one section (also on line 5); YAML keeps only the last "
                     "one: merge the two"]


def test_clean_file_and_anchors_have_no_duplicates(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a: &x {k: 1}\nb: *x\nc: {<<: *x, j: 2}\n")
    assert duplicate_keys(str(p)) == []


def test_syntax_error_names_file_line_and_column(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("a:\n  b: {c: 1\n  d: 2\n")
    (msg,) = duplicate_keys(str(p))
    assert msg.startswith(f"{p}:") and "YAML syntax error" in msg


def test_command_line_check_points_at_the_broken_line(tmp_path, repo_root):
    """Snakemake says only "Config file is not valid JSON or YAML"; the README's troubleshooting
    command says where."""
    import subprocess
    import sys

    bad = tmp_path / "bad.yaml"
    bad.write_text("default_studies: [epochs_density]\nstudies:\n  x: {temperature: [1, 2}\n")
    r = subprocess.run([sys.executable, "-m", "threeregime.configfiles", str(bad), str(tmp_path / "missing.yaml")],
                       cwd=repo_root, capture_output=True, text=True)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"{bad}:3:") and "YAML syntax error" in lines[0]
    assert lines[1].startswith(f"{tmp_path / 'missing.yaml'}: cannot be read")
    ok = subprocess.run([sys.executable, "-m", "threeregime.configfiles", "config.yaml", "presets/demo.yaml"],
                        cwd=repo_root, capture_output=True, text=True)
    assert ok.returncode == 0 and "valid YAML" in ok.stdout


def test_schema_problems_name_the_key_and_explain_yaml_strings(repo_root):
    import yaml

    from threeregime.configfiles import schema_problems

    schema = str(repo_root / "schemas" / "config.schema.yaml")
    config = yaml.safe_load((repo_root / "config.yaml").read_text())
    assert schema_problems(config, schema) == []
    config["defaults"]["train"]["lr"] = "1e-3"          # what YAML makes of `lr: 1e-3`
    config["engine"]["device"] = "gpu"
    config["engine"]["compile"] = "fastest"
    problems = schema_problems(config, schema)
    assert problems[0].startswith("defaults.train.lr: '1e-3' is not of type 'number' (YAML reads 1e-3 as a string")
    assert problems[1].startswith("engine.compile: ")
    assert problems[2] == "engine.device: 'gpu' is not one of ['auto', 'cpu', 'cuda']"
    assert len(problems) == 3
