"""Rosbag2 evaluation without ROS: export dataset takes to bags, read bags, score them.

    export.py     dataset takes -> a bag (images, queries, ground truth)
    reader.py     a bag's messages in time order; truncated or corrupt files read up to the damage
    mcap_scan.py  a record-by-record MCAP reader for files without a valid index or footer
    truth.py      the bag's ground truth and queries as scored samples
    scoring.py    answers -> the official metrics, submission, plots, records, latency and drops
    layout.py     topic names, frame stamps, the take segments kept in the bag's metadata
    messages.py   numpy <-> the rosbags message classes
    typestore.py  standard ROS 2 types + omama_ros/msg/*.msg for rosbags

Pairing the cameras and the queries is the node's own policy (omama_ros.sync and
omama_ros.pairing, pure Python); `omama bag eval` reaches it through omama_ros.bag_sets.
"""
