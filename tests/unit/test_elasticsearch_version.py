"""The pinned elasticsearch client has the major version of every Elasticsearch deployed.

elasticsearch-py sends ``compatible-with=<its major>`` on every request, and a server of
another major answers ``media_type_header_exception`` (elastic/elasticsearch-py#2923):
a 9.x client cannot use an 8.x cluster. The client's pin is read from pyproject.toml;
the servers from docker-compose.yml and every Kubernetes manifest, parsed as YAML: a
container image, an ECK ``Elasticsearch`` resource's ``spec.version`` (or its image),
and a kustomize ``images:`` override.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
IMAGE = re.compile(r"^(?:[\w.-]+(?::\d+)?/)?elasticsearch/elasticsearch(?:-\w+)?:(?P<tag>[\w.-]+)$")
VERSION = re.compile(r"^(?P<major>\d+)\.\d+\.\d+")


def client_version(pyproject: str) -> str:
    """The exact version of the ``elasticsearch`` requirement in ``pyproject``."""
    project = tomllib.loads(pyproject)["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins = [r.split("==", 1)[1] for r in requirements if re.match(r"elasticsearch==", r)]
    assert len(pins) == 1, f"expected one exact elasticsearch pin, found {pins}"
    return pins[0]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def server_versions(where: str, text: str) -> list[tuple[str, str]]:
    """(place, version) of every Elasticsearch server a YAML file (all its documents) runs."""
    found: list[tuple[str, str]] = []
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict):
            continue
        for value in _strings(doc):
            match = IMAGE.match(value.strip())
            if match:
                found.append((f"{where}: image {value}", match["tag"]))
        if doc.get("kind") == "Elasticsearch" and "version" in doc.get("spec", {}):
            found.append((f"{where}: ECK spec.version", str(doc["spec"]["version"])))
        for image in doc.get("images", []) if doc.get("kind") == "Kustomization" else []:
            if str(image.get("name", "")).endswith("elasticsearch/elasticsearch"):
                if "newTag" in image:
                    found.append((f"{where}: kustomize images newTag", str(image["newTag"])))
    return found


def deployed_versions() -> list[tuple[str, str]]:
    """Every Elasticsearch version in docker-compose.yml and under deploy/k8s."""
    files = [ROOT / "docker-compose.yml", *sorted((ROOT / "deploy" / "k8s").rglob("*.y*ml"))]
    found: list[tuple[str, str]] = []
    for path in files:
        found += server_versions(str(path.relative_to(ROOT)), path.read_text())
    return found


def major_mismatches(client: str, servers: list[tuple[str, str]]) -> list[str]:
    """Each server whose major version differs from the client's (or that has none)."""
    client_major = VERSION.match(client)
    assert client_major, client
    problems = []
    for where, version in servers:
        match = VERSION.match(version)
        if match is None:
            problems.append(f"{where}: {version!r} is not an exact version")
        elif match["major"] != client_major["major"]:
            problems.append(f"{where}: server {version}, client elasticsearch=={client}")
    return problems


def test_the_client_major_is_the_major_of_every_deployed_elasticsearch() -> None:
    client = client_version((ROOT / "pyproject.toml").read_text())
    servers = deployed_versions()
    places = {where.split(":")[0] for where, _ in servers}
    # compose, the dev StatefulSet and the prod ECK resource at least.
    assert {
        "docker-compose.yml",
        "deploy/k8s/overlays/dev/elasticsearch.yaml",
        "deploy/k8s/overlays/prod/elasticsearch.yaml",
    } <= places, places
    assert major_mismatches(client, servers) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("image: docker.elastic.co/elasticsearch/elasticsearch:8.19.4\n", "8.19.4"),
        (
            "kind: Elasticsearch\napiVersion: elasticsearch.k8s.elastic.co/v1\n"
            "spec: {version: 8.19.4, nodeSets: []}\n",
            "8.19.4",
        ),
        (
            "kind: Kustomization\nimages:\n"
            "  - {name: docker.elastic.co/elasticsearch/elasticsearch, newTag: 8.19.4}\n",
            "8.19.4",
        ),
        ("containers: [{image: 'elasticsearch/elasticsearch:8.19.4'}]\n", "8.19.4"),
    ],
)
def test_the_check_finds_an_8x_server_in_each_form_and_fails_on_it(
    text: str, expected: str
) -> None:
    servers = server_versions("broken.yaml", text)
    assert [version for _, version in servers] == [expected]
    problems = major_mismatches("9.5.1", servers)
    assert len(problems) == 1 and "8.19.4" in problems[0] and "9.5.1" in problems[0]
    assert major_mismatches("8.19.3", servers) == []


def test_a_moving_tag_is_a_mismatch_too() -> None:
    servers = server_versions("x.yaml", "image: docker.elastic.co/elasticsearch/elasticsearch:9\n")
    (problem,) = major_mismatches("9.5.1", servers)
    assert problem.endswith("'9' is not an exact version")
