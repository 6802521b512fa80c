"""Package discovery for the wheel: the three source folders and the import paths they
install as (``exporters/`` -> ``mobattn.exporters``, ``bench/`` -> ``mobattn.bench``).

Every folder with an ``__init__.py`` under them is found, so a new sub-package can never
go missing from the wheel (``bench/scripts/`` has none: one-off scripts stay out).
Everything else about the package is in pyproject.toml.
"""

from setuptools import find_packages, setup

# import path -> folder in this repository
PACKAGE_DIRS = {"mobattn": "mobattn", "mobattn.exporters": "exporters", "mobattn.bench": "bench"}


def packages() -> list[str]:
    found = []
    for name, folder in PACKAGE_DIRS.items():
        found += [name] + [f"{name}.{sub}" for sub in find_packages(folder)]
    return sorted(found)


if __name__ == "__main__":
    setup(packages=packages(), package_dir={k: v for k, v in PACKAGE_DIRS.items() if k != v})
