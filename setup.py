"""normpipe: full-dataset normalization with Beam + tf.Transform, served in-graph."""

from setuptools import find_packages, setup

setup(
    name="normpipe",
    version="0.2.0",
    description="Full-dataset feature normalization with Apache Beam and tf.Transform, exported for TF Serving",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["normpipe", "normpipe.*"]),
    python_requires=">=3.10,<3.13",
    install_requires=[
        "tensorflow==2.21.*",
        "tensorflow-transform==1.21.*",
        "tfx-bsl==1.21.*",
        "apache-beam[gcp]==2.77.*",
        "keras>=3.10,<4",
        "numpy>=1.26,<3",
        "pyarrow>=14",
        "matplotlib>=3.8",
        "tensorflow-serving-api>=2.17,<2.22",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6.100", "pandas>=2", "gcp-storage-emulator>=2024"],
        # The peers of benchmarks/stats_throughput.py; never needed to run normpipe.
        "benchmarks": ["duckdb>=1.1", "polars>=1.10", "pandas>=2", "matplotlib>=3.8"],
    },
    entry_points={"console_scripts": ["normpipe=normpipe.pipeline.cli:main"]},
)
