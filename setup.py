"""Package discovery (the metadata is in pyproject.toml).

Every package under ``lightlens/`` is found, and ``kernels/`` installs as ``lightlens.kernels``
(PyPI has an unrelated top-level package named ``kernels``); tests and benchmarks stay out.
"""
from setuptools import find_packages, setup

packages = find_packages(include=["lightlens", "lightlens.*"])
kernel_packages = ["lightlens.kernels"] + [f"lightlens.kernels.{p}" for p in find_packages("kernels")]
setup(
    packages=packages + kernel_packages,
    package_dir={"lightlens": "lightlens", "lightlens.kernels": "kernels"},
)
