"""Package layout: the repository keeps the design card's top-level folders (mer_data/, model/, pipelines/,
schemas/), and the installed distribution exposes them under ONE import name, `mer_data`, so nothing named
`model` or `pipelines` lands at the top of site-packages (setuptools' package-dir). Everything else is in
pyproject.toml; tests/test_packaging.py builds the wheel and checks its layout."""
from setuptools import find_namespace_packages, setup

MAPPED = ("model", "pipelines", "schemas")  # repository folder -> mer_data.<folder>


def packages_under(folder: str) -> list[str]:
    # namespace discovery, as pyproject's own would do: mer_data/data/splits/... hold data files only
    return find_namespace_packages(include=[folder, f"{folder}.*"], exclude=["*.__pycache__"])


packages = packages_under("mer_data")
for folder in MAPPED:
    packages += [f"mer_data.{name}" for name in packages_under(folder)]

setup(packages=packages, package_dir={f"mer_data.{folder}": folder for folder in MAPPED})
