"""The two ways of answering the queries of one frame, named once (plain Python, no torch).

The publication and the benchmark answer every query alone ("independent"); the ROS node
sends a frame's objects in one call, where the selection rules that use the other queries
(exclusive matches, the layout prior) act ("joint"). Numbers comparable with the
publication come from "independent"; report "joint" numbers apart.
"""

PROTOCOLS = {
    "independent": "each query answered alone, as the publication and the benchmark do",
    "joint": "all objects of a frame answered together: selection rules may use the other objects (not published)",
}
