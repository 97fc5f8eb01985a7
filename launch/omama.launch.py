"""Starts the omama node (and optionally RViz) under a namespace, with topic remaps.

    ros2 launch omama_ros omama.launch.py direction:=exo2ego \
        ego_image:=/aria/rgb/image exo_image:=/cam1/color/image_raw queries:=/omama_queries rviz:=true

Arguments only become substitutions; the one check evaluated at launch time is whether RViz
can start when rviz:=true. Parameters come from params_file (config/omama.yaml by default);
the arguments below override its values.

- rviz:=true without rviz2 installed: the launch stops with an error naming the fix BEFORE
  anything starts (a failure after the node was spawned would leave it running: launch 3.7).
- The node exiting (a FATAL start-up error, or a crash) shuts the whole launch down, RViz
  included; closing RViz leaves the node running.
"""

import os

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = {
    "namespace": ("", "Namespace of the node (and of RViz)"),
    "direction": ("ego2exo", "ego2exo (queries on the ego camera) or exo2ego"),
    "config": ("default", "Matcher config: a shipped name, a YAML file or an `omama train` checkpoint"),
    "device": ("auto", "auto, cpu, cuda or cuda:N"),
    "image_transport": ("raw", "raw (sensor_msgs/Image) or compressed (<topic>/compressed)"),
    "ego_image": ("ego/image", "Ego camera image topic"),
    "exo_image": ("exo/image", "Exo camera image topic"),
    "queries": ("queries", "omama_ros/QueryArray topic"),
    "use_sim_time": ("false", "Use /clock (bag replay with --clock)"),
    "rviz": ("false", "Also start RViz with rviz/omama.rviz"),
    "params_file": (PathJoinSubstitution([FindPackageShare("omama_ros"), "config", "omama.yaml"]),
                    "Parameters file of the node"),
}


def rviz_problem() -> str | None:
    """Why the rviz2 executable cannot start (as launch_ros looks it up), or None."""
    try:
        prefix = get_package_prefix("rviz2")
    except PackageNotFoundError:
        return "the package rviz2 is not installed (not in AMENT_PREFIX_PATH)"
    executable = os.path.join(prefix, "lib", "rviz2", "rviz2")
    if not os.access(executable, os.X_OK):
        return f"{executable} is missing or not executable"
    return None


def check_requested_components(context) -> list:
    """Runs before any process is started: fails the launch when RViz is asked for but missing."""
    if IfCondition(LaunchConfiguration("rviz")).evaluate(context):
        problem = rviz_problem()
        if problem:
            raise RuntimeError(f"rviz:=true but {problem}. Install it (sudo apt install ros-$ROS_DISTRO-rviz2) "
                               "or launch with rviz:=false. Nothing was started.")
    return []


def generate_launch_description() -> LaunchDescription:
    arg = LaunchConfiguration
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    node = Node(
        package="omama_ros",
        executable="omama_node",
        name="omama",
        namespace=arg("namespace"),
        output="screen",
        parameters=[arg("params_file"), {
            "direction": arg("direction"),
            "config": arg("config"),
            "device": arg("device"),
            "image_transport": arg("image_transport"),
            "use_sim_time": arg("use_sim_time"),
        }],
        remappings=[
            ("ego/image", arg("ego_image")),
            ("exo/image", arg("exo_image")),
            ("ego/image/compressed", [arg("ego_image"), "/compressed"]),
            ("exo/image/compressed", [arg("exo_image"), "/compressed"]),
            ("queries", arg("queries")),
        ],
        on_exit=Shutdown(reason="the omama node exited"),
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        name="omama_rviz",
        namespace=arg("namespace"),
        arguments=["-d", PathJoinSubstitution([FindPackageShare("omama_ros"), "rviz", "omama.rviz"])],
        parameters=[{"use_sim_time": arg("use_sim_time")}],
        condition=IfCondition(arg("rviz")),
    )
    # The check comes first: entities run in this order, and a failing one stops the rest.
    return LaunchDescription([*declared, OpaqueFunction(function=check_requested_components), node, rviz])
