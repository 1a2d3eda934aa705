"""The chart README lists every value (with its default), and the README
has the install sections."""

from __future__ import annotations

import yaml

from helpers import CHART, ROOT, leaf_paths, readme_with_table, values_doc


def test_every_value_is_documented_in_values_yaml():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    documented = {k for k, _, _ in values_doc()}
    missing = []
    for leaf in leaf_paths(values):
        parts = leaf.split(".")
        if not any(".".join(parts[:i]) in documented for i in range(1, len(parts) + 1)):
            missing.append(leaf)
    assert not missing, f"values without a `# --` comment: {missing}"


def test_chart_readme_lists_every_value():
    text = (CHART / "README.md").read_text()
    assert readme_with_table(text) == text, "the values table is stale: run `scripts/check-packaging --update`"
    for key, _, _ in values_doc():
        assert f"| `{key}` |" in text


def test_schema_knows_every_value():
    import json
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for leaf in leaf_paths(values):
        node = schema
        for part in leaf.split("."):
            props = node.get("properties", {})
            if part not in props:
                assert node.get("additionalProperties", True) is not False, f"{leaf} not in values.schema.json"
                break
            node = props[part]


def test_readme_install_sections():
    readme = (ROOT / "README.md").read_text()
    for heading in ("## Install on Kubernetes", "## Install with systemd"):
        assert heading in readme, heading
    for needle in ("helm install", "kubectl apply -k deploy", "kind: Ingress", "ingressClassName: hipache",
                   "redis-cli", "create secret generic hipache-redis"):
        assert needle in readme, needle
