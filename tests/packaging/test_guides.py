"""The guides stay true of the repository: relative links (and their
anchors) resolve, the kind walk-through's values and `--set` flags render
the chart as it says, its manifests and the cert-manager example validate
and fit together, and the changelog has its Unreleased section with upgrade
notes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from helpers import CHART, KUBE_VERSIONS, NAMESPACE, RELEASE, ROOT, find, is_generated, run, tool

KIND = ROOT / "examples/kind"
CERT_MANAGER = ROOT / "examples/cert-manager"
GUIDES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")),
          *sorted((ROOT / "examples").glob("*/README.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+\s+(.*)$", text, re.M)}


@pytest.mark.parametrize("guide", GUIDES, ids=[str(g.relative_to(ROOT)) for g in GUIDES])
def test_relative_links_resolve(guide):
    text = re.sub(r"```.*?```", "", guide.read_text(), flags=re.S)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target):
            continue  # a URL
        path, _, anchor = target.partition("#")
        dest = (guide.parent / path).resolve() if path else guide
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, broken


def helm_template(args: list[str]) -> list[dict]:
    res = run([tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args])
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def kind_install_sets() -> list[str]:
    """The `helm install ... --set ...` command of docs/kind.md, as argv."""
    text = (ROOT / "docs/kind.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    commands = [c for b in blocks for c in b.replace("\\\n", " ").splitlines()
                if c.lstrip().startswith("helm install") and "--set" in c]
    assert len(commands) == 1, commands
    argv = shlex.split(commands[0], comments=True)
    assert argv[:4] == ["helm", "install", RELEASE, "charts/hipache"], argv[:4]
    return argv[4:]


def stable(objs: list[dict]) -> list[dict]:
    """Without the generated Secrets (random at each render) and the
    annotations that hash them."""
    out = []
    for o in objs:
        if is_generated(o):
            continue
        text = re.sub(r"checksum/[\w-]+: \S+", "checksum", yaml.safe_dump(o))
        out.append(yaml.safe_load(text))
    return out


def test_kind_values_render_what_the_guide_says():
    objs = helm_template(["-f", str(KIND / "values.yaml")])
    pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in find(objs, "Deployment")}
    images = {c["image"]: c["imagePullPolicy"] for spec in pods.values() for c in spec["containers"]}
    assert images.get("hipache:dev") == "Never" and images.get("hipache-syncer:dev") == "Never", images
    svc = next(o for o in find(objs, "Service") if o["metadata"]["name"] == "hipache")
    assert svc["spec"]["type"] == "NodePort"
    node_ports = {p["name"]: p.get("nodePort") for p in svc["spec"]["ports"]}
    cluster = yaml.safe_load((KIND / "cluster.yaml").read_text())
    mapped = {m["containerPort"]: m["hostPort"] for m in cluster["nodes"][0]["extraPortMappings"]}
    assert set(node_ports.values()) == set(mapped), (node_ports, mapped)
    guide = (ROOT / "docs/kind.md").read_text()
    for host_port in mapped.values():
        assert f"127.0.0.1:{host_port}" in guide, host_port
    args = next(c for c in pods["hipache-syncer"]["containers"] if c["name"] == "hipache-syncer")["args"]
    assert "--publish-address=127.0.0.1" in args


def test_kind_set_flags_are_the_values_file():
    sets = kind_install_sets()
    assert "-f" not in sets and "--values" not in sets
    assert stable(helm_template(sets)) == stable(helm_template(["-f", str(KIND / "values.yaml")]))


def test_guide_files_exist():
    text = (ROOT / "docs/kind.md").read_text() + (CERT_MANAGER / "README.md").read_text()
    for path in set(re.findall(r"\b((?:examples|deploy|charts)/[\w./-]+\.ya?ml)\b", text)):
        assert (ROOT / path).exists(), path


def validate(path: Path) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for d in docs:
        if d["apiVersion"].startswith("cert-manager.io/"):
            continue  # a CRD: no schema here
        for version in KUBE_VERSIONS:
            v = kubernetes_validate.latest_version() if version == "latest" else version
            kubernetes_validate.validate(d, v, strict=True)
    return docs


def test_kind_demo_validates_and_routes_to_its_service():
    docs = validate(KIND / "hello.yaml")
    ing = next(d for d in docs if d["kind"] == "Ingress")
    svc = next(d for d in docs if d["kind"] == "Service")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    class_name = yaml.safe_load((CHART / "values.yaml").read_text())["ingressClass"]["name"]
    assert ing["spec"]["ingressClassName"] == class_name
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == svc["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    host = ing["spec"]["rules"][0]["host"]
    assert f"Host: {host}" in (ROOT / "docs/kind.md").read_text()


def test_cert_manager_example_fits_together():
    issuers = {d["metadata"]["name"]: d for d in validate(CERT_MANAGER / "cluster-issuer.yaml")
               if d["kind"] == "ClusterIssuer"}
    assert issuers
    class_name = yaml.safe_load((CHART / "values.yaml").read_text())["ingressClass"]["name"]
    for name, issuer in issuers.items():
        acme = issuer["spec"]["acme"]
        assert acme["server"].startswith("https://") and acme["privateKeySecretRef"]["name"]
        for solver in acme["solvers"]:
            assert solver["http01"]["ingress"]["ingressClassName"] == class_name, name
    ing = next(d for d in validate(CERT_MANAGER / "ingress.yaml") if d["kind"] == "Ingress")
    assert ing["spec"]["ingressClassName"] == class_name
    assert ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] in issuers
    rule_hosts = {r["host"] for r in ing["spec"]["rules"]}
    for entry in ing["spec"]["tls"]:
        assert entry["secretName"], "without a secretName the syncer serves the default certificate"
        assert set(entry["hosts"]) <= rule_hosts


def test_changelog_has_unreleased_with_upgrade_notes():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in text
    sections = re.split(r"^## ", text, flags=re.M)
    unreleased = next(s for s in sections if s.startswith("[Unreleased]"))
    assert "### Upgrade notes" in unreleased
    assert "10264" in unreleased and "9090" in unreleased
    assert re.search(r"^\[Unreleased\]: \S+", text, re.M)
    upgrading = (ROOT / "docs/upgrading.md").read_text()
    assert "Upgrade notes" in upgrading and "CHANGELOG.md" in upgrading
