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
