"""Fixtures of the real-container tests: a Docker Engine and the images, built once a run.

The tests that use the images run last, and the images are built in the background from the end
of collection, so the rest of the suite runs meanwhile.
"""

from __future__ import annotations

import json

import pytest

from tests.support.docker import FIGURES, ROOT, StackImages, built_images, start_building

ORDER = ["test_image", "test_compose", "test_compose_failover"]  # the numbering


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests on containers run last; their images start building now, in a thread."""
    on_docker = [item for item in items if "images" in getattr(item, "fixturenames", ())]
    if not on_docker:
        return
    rest = [item for item in items if item not in on_docker]
    on_docker.sort(key=lambda item: ORDER.index(item.path.stem) if item.path.stem in ORDER else 9)
    items[:] = rest + on_docker
    if not config.option.collectonly:
        start_building()


@pytest.fixture(scope="session")
def images() -> StackImages:
    """The engine up, and every image built (or found by its content hash)."""
    built = built_images()
    for name in ("rootfs", "python", "agent", "redis", "nginx", "prometheus"):
        seconds = getattr(built, name).build_s
        FIGURES[f"build_{name}_s"] = -1 if seconds is None else seconds
    return built


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the deploy tests measured (docs/deploy.md quotes them)."""
    if not FIGURES:
        return
    terminalreporter.section("docker figures (a build of -1 s: found in the cache)")
    for key, value in FIGURES.items():
        terminalreporter.write_line(f"{key}: {value:.1f}")
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "docker-figures.json").write_text(json.dumps(FIGURES, indent=2) + "\n")
