"""The ROS package's files agree with the node: launch file (read with ast: `launch` and
`launch_ros` are not on PyPI), parameters file, RViz config, package.xml, CMakeLists.txt, and
the shell helpers."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest
import yaml

from omama_ros.parameters import BY_NAME, DYNAMIC, PARAMS
from roskit import REPO

NODE_TOPICS = ("ego/image", "exo/image", "ego/image/compressed", "exo/image/compressed", "queries")


def launch_tree() -> ast.Module:
    return ast.parse((REPO / "launch" / "omama.launch.py").read_text())


def call_keywords(tree: ast.Module, function: str) -> list[dict[str, ast.expr]]:
    """Keyword arguments of every call of `function` in the tree."""
    return [{kw.arg: kw.value for kw in node.keywords} for node in ast.walk(tree)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == function]


def omama_node_call(tree: ast.Module) -> dict[str, ast.expr]:
    calls = [kw for kw in call_keywords(tree, "Node") if ast.literal_eval(kw["package"]) == "omama_ros"]
    assert len(calls) == 1
    return calls[0]


def test_node_topic_names_are_relative_and_private():
    pytest.importorskip("rclpy", reason="rclpy is not importable")
    from omama_ros import node

    assert (node.EGO_IMAGE, node.EXO_IMAGE, node.QUERIES) == NODE_TOPICS[:2] + NODE_TOPICS[4:]
    assert node.EGO_IMAGE + node.COMPRESSED_SUFFIX == NODE_TOPICS[2]
    assert all(name.startswith("~/") for name in (node.MATCHES, node.MASK, node.OVERLAY))


def test_launch_file_runs_the_installed_executable():
    call = omama_node_call(launch_tree())
    executable = ast.literal_eval(call["executable"])
    assert f"omama_install_wrapper({executable} omama_ros.node lib/${{PROJECT_NAME}})" in cmake_code()
    assert ast.literal_eval(call["name"]) == "omama"


def cmake_code() -> str:
    """CMakeLists.txt without comments."""
    return "\n".join(line.split("#")[0] for line in (REPO / "CMakeLists.txt").read_text().splitlines())


def test_cmake_installs_the_same_commands_as_setup_py():
    """colcon installs bin/omama and lib/omama_ros/omama_node calling the same main()s as pip's
    console scripts `omama` and `omama_ros_node`."""
    setup_call = next(node for node in ast.walk(ast.parse((REPO / "setup.py").read_text()))
                      if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup")
    scripts = next(ast.literal_eval(kw.value) for kw in setup_call.keywords if kw.arg == "entry_points")
    targets = dict(line.replace(" ", "").split("=") for line in scripts["console_scripts"])
    code = cmake_code()
    assert f"omama_install_wrapper(omama {targets['omama'].removesuffix(':main')} bin)" in code
    assert f"omama_install_wrapper(omama_node {targets['omama_ros_node'].removesuffix(':main')} " in code
    assert "from ${module} import main" in code and '"#!${Python3_EXECUTABLE}' in (REPO / "CMakeLists.txt").read_text()


def test_launch_parameters_and_remaps_match_the_node():
    tree = launch_tree()
    call = omama_node_call(tree)
    parameters = call["parameters"]
    assert isinstance(parameters, ast.List)
    dicts = [item for item in parameters.elts if isinstance(item, ast.Dict)]
    keys = {ast.literal_eval(key) for d in dicts for key in d.keys}
    assert keys <= set(BY_NAME) | {"use_sim_time"}, keys - set(BY_NAME)
    assert {"direction", "config", "device", "use_sim_time"} <= keys
    remapped = {ast.literal_eval(pair.elts[0]) for pair in call["remappings"].elts}
    assert remapped == set(NODE_TOPICS)


def test_launch_arguments():
    tree = launch_tree()
    arguments = next(node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
                     and getattr(node.targets[0], "id", None) == "ARGUMENTS")
    names = {ast.literal_eval(key) for key in arguments.keys}
    assert {"direction", "ego_image", "exo_image", "queries", "namespace", "config", "device", "use_sim_time",
            "rviz"} <= names
    used = {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "arg" and node.args}
    assert used <= names and names - used <= set(), names - used
    # Thin: nothing evaluated at launch time but the check for RViz (tested below).
    source = (REPO / "launch" / "omama.launch.py").read_text()
    assert source.count("OpaqueFunction(") == 1 and "subprocess" not in source and "perform(" not in source


class Recorded:
    """Stands for any class of `launch`/`launch_ros`: keeps its arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class StubIfCondition(Recorded):
    """launch.conditions.IfCondition, for a LaunchConfiguration of a plain string value."""

    def evaluate(self, context) -> bool:
        value = context.launch_configurations[self.args[0].args[0]].strip().lower()
        assert value in ("true", "false", "1", "0"), value  # what IfCondition accepts
        return value in ("true", "1")


def load_launch_file(monkeypatch):
    """The launch file as a module, on stand-ins for `launch` and `launch_ros` (not on PyPI):
    each class it names records its arguments, so its structure can be inspected."""
    import importlib.util
    import types

    pytest.importorskip("ament_index_python", reason="ament_index_python (requirements/ros.txt)")
    for name in ("launch", "launch.actions", "launch.conditions", "launch.substitutions", "launch_ros",
                 "launch_ros.actions", "launch_ros.substitutions"):
        module = types.ModuleType(name)
        module.__getattr__ = lambda attribute: type(attribute, (Recorded,), {})
        monkeypatch.setitem(sys.modules, name, module)
    sys.modules["launch.conditions"].IfCondition = StubIfCondition
    spec = importlib.util.spec_from_file_location("omama_launch", REPO / "launch" / "omama.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_prefix(root, rviz_executable: bool):
    """An install prefix holding an rviz2 package (its ament index entry), with or without lib/rviz2/rviz2."""
    (root / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (root / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").write_text("")
    if rviz_executable:
        (root / "lib" / "rviz2").mkdir(parents=True)
        (root / "lib" / "rviz2" / "rviz2").write_text("#!/bin/sh\n")
        (root / "lib" / "rviz2" / "rviz2").chmod(0o755)
    return root


def test_launch_checks_rviz_before_starting_anything_and_ends_with_the_node(monkeypatch):
    """rviz:=true fails before any process starts (a failure after the node was spawned left it
    running: launch 3.7); the node's exit shuts the launch down."""
    launch = load_launch_file(monkeypatch).generate_launch_description()
    entities = launch.args[0]
    kinds = [type(entity).__name__ for entity in entities]
    first_node = kinds.index("Node")
    assert kinds.count("OpaqueFunction") == 1 and kinds.index("OpaqueFunction") < first_node
    assert all(kind == "DeclareLaunchArgument" for kind in kinds[:kinds.index("OpaqueFunction")])
    omama = entities[first_node]
    assert omama.kwargs["package"] == "omama_ros"
    assert type(omama.kwargs["on_exit"]).__name__ == "Shutdown"
    rviz = entities[kinds.index("Node", first_node + 1)]
    assert rviz.kwargs["package"] == "rviz2" and "on_exit" not in rviz.kwargs  # closing RViz keeps the node


@pytest.mark.parametrize("installed", ["none", "package only", "executable"])
@pytest.mark.parametrize("rviz", ["true", "false", "True", "0"])
def test_launch_refuses_rviz_when_it_is_missing(monkeypatch, tmp_path, installed, rviz):
    module = load_launch_file(monkeypatch)
    check = next(entity for entity in module.generate_launch_description().args[0]
                 if type(entity).__name__ == "OpaqueFunction").kwargs["function"]
    prefix = tmp_path / "empty"
    prefix.mkdir()
    if installed != "none":
        prefix = fake_prefix(tmp_path / "ros", rviz_executable=installed == "executable")
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    context = SimpleNamespace(launch_configurations={"rviz": rviz})
    if rviz.lower() in ("true", "1") and installed != "executable":
        with pytest.raises(RuntimeError) as error:
            check(context)
        message = str(error.value)
        assert "rviz:=false" in message and "rviz2" in message and "Nothing was started" in message
        assert ("not installed" in message) == (installed == "none")
    else:
        assert check(context) == []


def test_parameters_file_matches_the_declared_parameters():
    data = yaml.safe_load((REPO / "config" / "omama.yaml").read_text())
    values = data["/**"]["ros__parameters"]
    assert set(values) == {spec.name for spec in PARAMS} - {"visibility_threshold"}
    for name, value in values.items():
        spec = BY_NAME[name]
        assert type(value) is type(spec.default), name
        assert value == spec.default, f"{name}: the file and the node's default differ"
        if spec.choices:
            assert value in spec.choices


def test_parameter_table():
    assert set(DYNAMIC) <= set(BY_NAME)
    for spec in PARAMS:
        assert spec.description
        if spec.low is not None:
            assert spec.low <= spec.default <= spec.high, spec.name
        if spec.choices:
            assert spec.default in spec.choices


def test_docs_list_every_parameter_and_topic():
    docs = (REPO / "docs" / "ros.md").read_text()
    for spec in PARAMS:
        assert f"`{spec.name}`" in docs, spec.name
    for topic in NODE_TOPICS + ("~/matches", "~/mask", "~/overlay", "/diagnostics"):
        assert f"`{topic}`" in docs, topic


def test_rviz_shows_overlay_and_mask():
    config = yaml.safe_load((REPO / "rviz" / "omama.rviz").read_text())
    topics = [d["Topic"]["Value"] for d in config["Visualization Manager"]["Displays"]]
    assert topics == ["omama/overlay", "omama/mask"]


def test_package_xml():
    parse_package = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg (requirements/ros.txt)").parse_package

    package = parse_package(str(REPO / "package.xml"))
    assert package.name == "omama_ros" and package.package_format == 3
    assert package.get_build_type() == "ament_cmake"
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= \
        {d.name for d in package.buildtool_depends}
    exec_depends = {d.name for d in package.exec_depends}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "builtin_interfaces", "rosidl_default_runtime",
            "python3-numpy", "python3-opencv", "python3-torch"} <= exec_depends
    assert "rosidl_interface_packages" in {g.name for g in package.member_of_groups}


def test_licence_is_apache_2_everywhere():
    """LICENSE holds the Apache License 2.0 and every piece of metadata names it."""
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "Grant of Patent License" in text
    assert len(text) > 10_000  # the full text, not a pointer to it
    package = ET.parse(REPO / "package.xml").getroot()
    assert [element.text for element in package.iter("license")] == ["Apache-2.0"]
    setup_call = next(node for node in ast.walk(ast.parse((REPO / "setup.py").read_text()))
                      if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup")
    assert {kw.arg: ast.literal_eval(kw.value) for kw in setup_call.keywords if kw.arg == "license"} == \
        {"license": "Apache-2.0"}
    # README's licence section, where it has one, names the same licence.
    readme = (REPO / "README.md").read_text()
    section = re.search(r"^#+ Licen[cs]e\s*\n(.*?)(^#|\Z)", readme, re.MULTILINE | re.DOTALL | re.IGNORECASE)
    assert section is None or ("Apache" in section.group(1) and "MIT" not in section.group(1))


def test_cmake_generates_every_message():
    cmake = (REPO / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"(msg/\w+\.msg)"', cmake))
    assert listed == {f"msg/{p.name}" for p in (REPO / "msg").glob("*.msg")}
    assert "ament_python_install_package(omama_ros)" not in cmake_code()  # collides with rosidl's package


def test_python_package_has_no_msg_module_of_its_own():
    assert not (REPO / "omama_ros" / "msg").exists() and not (REPO / "omama_ros" / "msg.py").exists()
    assert "extend_path" in (REPO / "omama_ros" / "__init__.py").read_text()


def test_ros_env_keeps_dds_local(tmp_path):
    env = {"PATH": os.environ["PATH"], "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "ROS_LOCALHOST_ONLY": "1",
           "_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1"}
    out = subprocess.run(["bash", "-c", f". '{REPO}/scripts/ros_env.sh' && env"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=True).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert values["FASTDDS_DEFAULT_PROFILES_FILE"] == str(REPO / "ros" / "fastdds-localhost.xml")
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE" not in values and "_ROS_WHEELS_BOOTSTRAP_COMPLETE" not in values
    assert 0 <= int(values["ROS_DOMAIN_ID"]) <= 101
    # POSIX sh outside the repository: refuses rather than exporting a missing profile.
    failed = subprocess.run(["sh", "-c", f". '{REPO}/scripts/ros_env.sh'"], env=env, cwd=tmp_path,
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "OMAMA_ROOT" in failed.stderr


def test_project_profile_is_the_shared_one():
    shared = REPO.parent / "shared" / "ros" / "fastdds-localhost.xml"
    if not shared.exists():
        pytest.skip("no shared/ beside the repository")
    assert (REPO / "ros" / "fastdds-localhost.xml").read_text() == shared.read_text()


@pytest.mark.slow  # builds the interfaces with cmake (into the running venv)
@pytest.mark.usefixtures("ros_available")
def test_build_script_is_idempotent_and_fast():
    script = REPO / "scripts" / "build_ros_interfaces.sh"
    env = {**os.environ, "VENV": sys.prefix}  # the venv running these tests
    subprocess.run([str(script)], check=True, capture_output=True, timeout=600, env=env)
    start = time.monotonic()
    second = subprocess.run([str(script)], check=True, capture_output=True, text=True, timeout=60, env=env)
    assert "up to date" in second.stdout and time.monotonic() - start < 5


@pytest.mark.slow
@pytest.mark.usefixtures("ros_available")
def test_full_install_runs_the_node_from_its_prefix(tmp_path):
    """CMakeLists.txt as colcon runs it (OMAMA_INSTALL_PYTHON=ON) into its own prefix, from a
    copy of the sources outside the work tree (as in a colcon workspace); then the installed
    lib/omama_ros/omama_node starts the installed node, and bin/omama runs from PATH after the
    package's setup script."""
    import shutil
    import signal

    from roskit import ros_env

    source, build, prefix = tmp_path / "src", tmp_path / "build", tmp_path / "install"
    source.mkdir()
    for name in ("CMakeLists.txt", "package.xml"):
        shutil.copy(REPO / name, source / name)
    for name in ("msg", "omama_ros", "omama_core", "launch", "config", "rviz"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "AMENT_PREFIX_PATH": sys.prefix}
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    steps = [["cmake", "-S", source, "-B", build, "-DBUILD_TESTING=OFF", f"-DCMAKE_PREFIX_PATH={sys.prefix}",
              f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DPython3_EXECUTABLE={sys.executable}"],
             ["cmake", "--build", build, "-j", str(os.cpu_count() or 2)], ["cmake", "--install", build]]
    for step in steps:
        done = subprocess.run([str(s) for s in step], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    wrapper = prefix / "lib" / "omama_ros" / "omama_node"
    assert os.access(wrapper, os.X_OK)
    for path in ("share/omama_ros/launch/omama.launch.py", "share/omama_ros/config/omama.yaml",
                 "share/omama_ros/rviz/omama.rviz", "share/omama_ros/package.xml"):
        assert (prefix / path).is_file(), path
    assert (site / "omama_core" / "configs" / "default.yaml").is_file()
    assert (site / "omama_core" / "configs" / "base" / "offline.yaml").is_file()  # what default.yaml extends
    assert (site / "omama_core" / "modeling" / "omama.py").is_file()
    assert "extend_path" in (site / "omama_ros" / "__init__.py").read_text()

    run_env = ros_env()
    run_env.update(PYTHONPATH=str(site), LD_LIBRARY_PATH=str(prefix / "lib"),
                   AMENT_PREFIX_PATH=f"{prefix}{os.pathsep}{sys.prefix}")
    where = subprocess.run([sys.executable, "-c", "import omama_ros.node, omama_ros.msg, omama_core; "
                            "print(omama_ros.node.__file__, omama_ros.msg.__file__, omama_core.__file__)"],
                           env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr
    assert all(path.startswith(str(site)) for path in where.stdout.split()), where.stdout
    # bin/omama: on PATH after sourcing the package's setup script, and it runs.
    script = f". '{prefix}/share/omama_ros/local_setup.sh' && command -v omama && omama --help"
    cli = subprocess.run(["sh", "-c", script],
                         env={**run_env, "PATH": "/usr/bin:/bin", "PYTHONPATH": ""}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert cli.stdout.splitlines()[0] == str(prefix / "bin" / "omama")
    assert "usage: omama" in cli.stdout and all(f" {name} " in cli.stdout for name in ("synth", "train", "eval"))

    log = tmp_path / "node.log"
    with open(log, "w") as out:
        node = subprocess.Popen([str(wrapper), "--ros-args", "-p", "device:=cpu"], env=run_env, cwd=tmp_path,
                                stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while "ready:" not in log.read_text() and node.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "ready:" in log.read_text(), log.read_text()
        finally:
            node.send_signal(signal.SIGINT)
            code = node.wait(20)
    assert code == 0, log.read_text()


def test_setup_py_lists_every_python_package_and_the_messages():
    """A pip install (not editable) installs only what setup.py lists: every folder of
    omama_core/omama_ros with an __init__.py, and msg/*.msg for omama_core.bags."""
    tree = ast.parse((REPO / "setup.py").read_text())
    setup_call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                      and getattr(node.func, "id", None) == "setup")
    listed = ast.literal_eval(next(kw.value for kw in setup_call.keywords if kw.arg == "packages"))
    on_disk = {".".join(path.parent.relative_to(REPO).parts) for top in ("omama_core", "omama_ros")
               for path in (REPO / top).rglob("__init__.py") if "__pycache__" not in path.parts}
    assert set(listed) == on_disk
    data_files = ast.unparse(next(kw.value for kw in setup_call.keywords if kw.arg == "data_files"))
    assert "'share/omama_ros/msg'" in data_files and "glob('*.msg')" in data_files
