"""The Dockerfile builds one lean, non-root image per service, and every image is pinned.

Read statically (no Docker engine here): each target installs only its own extra, in a
layer that depends on pyproject.toml alone; TensorFlow reaches only the images whose
extra pulls it in; each runs as uid 10001, probes /healthz and exposes exactly the ports
its Kubernetes Deployment declares. Third-party images carry exact version tags.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from typing import Any

import pytest

from tests.fixtures.deploy import DOCKERFILE, OVERLAYS, ROOT, load_compose, pod_specs, render

TARGETS = ("collector", "labeler", "featurizer", "trainer", "inference")
TENSORFLOW = {"tensorflow", "tensorflow-cpu", "tensorflow-serving-api"}
# name:x.y.z[-suffix] or name@sha256:digest; never a moving tag such as `latest` or `8`.
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def stages(text: str | None = None) -> dict[str, list[str]]:
    """Dockerfile stage name -> its instruction lines (continuations joined)."""
    text = (text or DOCKERFILE.read_text()).replace("\\\n", " ")
    result: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            current = line.split(" AS ")[1].strip()
            result[current] = [line]
        elif current is not None:
            result[current].append(line)
    return result


def _extra_requirements(extra: str, extras: dict[str, list[str]]) -> set[str]:
    """Distribution names an extra pulls in, following mlcycle[...] references."""
    names: set[str] = set()
    for requirement in extras[extra]:
        name = re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0].lower()
        if name == "mlcycle":
            inner = requirement.split("[", 1)[1].split("]")[0]
            for sub in inner.split(","):
                names |= _extra_requirements(sub.strip(), extras)
        else:
            names.add(name)
    return names


@cache
def _deployments() -> dict[str, dict[str, Any]]:
    docs = render(OVERLAYS["dev"])
    return {
        where.split("/")[1]: spec
        for where, _, spec in pod_specs(docs)
        if where.startswith("Deployment/")
    }


def image_problems(text: str, target: str) -> list[str]:
    """What is wrong with one service target of the Dockerfile ``text``."""
    lines = stages(text).get(target)
    if lines is None:
        return [f"no target {target}"]
    problems = []
    installs = [
        i for i, line in enumerate(lines) if line.startswith("RUN") and "pip install" in line
    ]
    copies_source = [i for i, line in enumerate(lines) if line.startswith("COPY services")]
    deps = [i for i in installs if f"'.[{target}]'" in lines[i]]
    if not deps:
        problems.append(f"{target}: does not install its own extra .[{target}]")
    elif not copies_source or deps[0] > copies_source[0]:
        problems.append(f"{target}: dependencies are installed after the source is copied")
    else:
        copied = [line for line in lines[: deps[0]] if line.startswith("COPY")]
        if copied != ["COPY pyproject.toml ./"]:
            problems.append(f"{target}: the dependency layer depends on {copied}")
    if any("[all" in line for line in lines):
        problems.append(f"{target}: installs every extra")
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    if not users or users[-1] in ("0", "root"):
        problems.append(f"{target}: runs as root")
    elif max(installs, default=0) > lines.index(f"USER {users[-1]}"):
        problems.append(f"{target}: installs after switching user")
    if not any(line.startswith("HEALTHCHECK ") and "/healthz" in line for line in lines):
        problems.append(f"{target}: no HEALTHCHECK on /healthz")
    exposed = {int(p) for line in lines if line.startswith("EXPOSE ") for p in line.split()[1:]}
    (container,) = _deployments()[target]["containers"]
    declared = {p["containerPort"] for p in container["ports"]}
    if exposed != declared:
        problems.append(
            f"{target}: EXPOSE {sorted(exposed)} but the service listens on {sorted(declared)}"
        )
    health = [line for line in lines if line.startswith("HEALTHCHECK ")]
    if health and not any(f":{port}/healthz" in health[0] for port in declared):
        problems.append(f"{target}: HEALTHCHECK probes another port")
    cmd = [line for line in lines if line.startswith("CMD ")]
    if not cmd or cmd[-1] != "CMD " + str(container["args"]).replace("'", '"'):
        problems.append(f"{target}: CMD is not {container['args']}")
    return problems


@pytest.mark.integration
@pytest.mark.parametrize("target", TARGETS)
def test_each_service_target_is_lean_cached_non_root_and_probed(target: str) -> None:
    assert image_problems(DOCKERFILE.read_text(), target) == []


@pytest.mark.integration
@pytest.mark.parametrize(
    ("good", "bad", "complaint"),
    [
        ("USER 10001\nEXPOSE 8001", "EXPOSE 8001", "runs as root"),
        ("EXPOSE 8001\n", "EXPOSE 8001 9000\n", "EXPOSE"),
        ("COPY pyproject.toml ./\nRUN mkdir", "COPY . ./\nRUN mkdir", "depends on"),
        ("pip install '.[collector]'", "pip install '.[all]'", "own extra"),
        ("8001/healthz", "8001/", "HEALTHCHECK"),
    ],
)
def test_the_image_check_catches_a_broken_target(good: str, bad: str, complaint: str) -> None:
    text = DOCKERFILE.read_text()
    assert good in text
    problems = image_problems(text.replace(good, bad, 1), "collector")
    assert any(complaint in p for p in problems), problems


def test_tensorflow_only_in_the_images_that_need_it() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    with_tf = {t for t in TARGETS if _extra_requirements(t, extras) & TENSORFLOW}
    # The trainer trains with it; inference needs TF Serving's stubs, which import it.
    assert with_tf == {"trainer", "inference"}
    for target in set(TARGETS) - with_tf:
        lines = stages()[target]
        assert not any("tensorflow" in line for line in lines if not line.startswith("#")), target


def test_the_model_server_is_the_tensorflow_serving_image_of_the_trainers_release() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    tf = next(r for r in extras["trainer"] if r.startswith("tensorflow=="))
    image = load_compose()["services"]["modelserver"]["image"]
    assert image == "tensorflow/serving:" + tf.split("==")[1]


@pytest.mark.integration
def test_every_image_is_pinned_to_an_exact_version() -> None:
    images = {
        line.split()[1]
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("FROM ") and " AS " in line
    }
    images.discard("base")
    images |= {spec["image"] for spec in load_compose()["services"].values()}
    for overlay in OVERLAYS:
        for _, _, spec in pod_specs(render(OVERLAYS[overlay])):
            images |= {c["image"] for c in spec["containers"]}
    assert len(images) >= 8
    for image in images:
        assert PINNED.match(image) and ("@sha256:" in image or ":" in image), image
    assert not PINNED.match("redis:7") and not PINNED.match("redis:latest")


def test_the_build_context_leaves_secrets_and_local_state_out() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "the context is an allow-list"
    allowed = {r[1:] for r in rules if r.startswith("!")}
    # The behavioural suite is data the featurizer and trainer images carry, not code.
    assert allowed == {"pyproject.toml", "README.md", "services/", "tests/behaviour/"}
