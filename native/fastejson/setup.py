"""Builds the `fastejson` C extension (setuptools needs a setup script for extension modules)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fastejson",
            sources=["fastejson.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"],
        )
    ],
)
