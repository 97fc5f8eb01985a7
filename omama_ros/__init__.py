"""ROS 2 side of omama: message conversions, the stamp synchronizer and the perception node.

The generated interfaces (`omama_ros.msg`) are installed by CMake into a folder of the same
name elsewhere on sys.path (the venv's site-packages, or a colcon install space). Extending
the package path lets both halves be imported as one package, whichever is found first.
This package must not define a `msg` module of its own.
"""
import pkgutil

__path__ = pkgutil.extend_path(__path__, __name__)
