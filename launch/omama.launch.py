"""Starts the omama node (and optionally RViz) under a namespace, with topic remaps.

    ros2 launch omama_ros omama.launch.py direction:=exo2ego \
        ego_image:=/aria/rgb/image exo_image:=/cam1/color/image_raw queries:=/omama_queries rviz:=true

Arguments only become substitutions: nothing is evaluated here. Parameters come from
params_file (config/omama.yaml by default); the arguments below override its values.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
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
    return LaunchDescription([*declared, node, rviz])
