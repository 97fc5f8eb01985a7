"""pip install -e .   (the ROS 2 messages are built separately: see README and docs/ros.md)."""

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).parent


def requirements(name: str) -> list[str]:
    lines = (Path(__file__).parent / "requirements" / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="omama",
    version="0.1.0",
    description="O-MaMa object mask matching between egocentric and exocentric views, with a ROS 2 node",
    long_description=(Path(__file__).parent / "README.md").read_text() if (Path(__file__).parent / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Listed explicitly: the flat layout (msg/, launch/, training/) defeats auto-discovery.
    packages=["omama_core", "omama_core.bags", "omama_core.commands", "omama_core.data", "omama_core.modeling",
              "omama_core.offline", "omama_core.selection", "omama_core.training", "omama_ros"],
    package_data={"omama_core": ["configs/*.yaml", "configs/base/*.yaml", "weights/*.pt", "weights/*.md"]},
    # the message definitions, where omama_core.bags looks for them in an install (<prefix>/share/omama_ros/msg)
    data_files=[("share/omama_ros/msg", sorted(str(p.relative_to(HERE)) for p in (HERE / "msg").glob("*.msg")))],
    install_requires=requirements("base.txt"),
    extras_require={"test": requirements("test.txt")},
    entry_points={
        "console_scripts": [
            "omama = omama_core.cli:main",
            "omama_ros_node = omama_ros.node:main",
        ]
    },
)
