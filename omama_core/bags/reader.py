"""A bag's messages in time order, deserialized, with every problem named and counted.

Reads what ROS itself writes (rosbag2 folders with mcap or sqlite3 storage, CDR) and a bare
.mcap file. A file that cannot be opened by its index (cut off, damaged) is read record by
record up to the damage (mcap_scan.py); a failure while reading stops at that message. Either
way the messages before the damage are used and the problem is reported with the file, the
topic and the stamp.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import DatasetError
from .layout import CUSTOM_DATA_KEY, NS, BagInfo
from .mcap_scan import McapDamage, McapScan, RawMessage
from .typestore import require_rosbags, typestore

MAX_LISTED = 20  # problems kept with their message (all are counted)


@dataclass(frozen=True)
class BagMessage:
    topic: str
    log_time: int  # ns, when the message was recorded
    msg: object  # a rosbags message dataclass


class BagReader:
    """One bag: a rosbag2 folder (metadata.yaml + .mcap or .db3 files) or a single .mcap file.

    `topics` maps topic -> type; `info` is the export record (None for recorded bags);
    `problems` lists what went wrong ("kind: message"), `counts` counts it by kind.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise DatasetError(f"bag {self.path} does not exist")
        self.problems: list[str] = []
        self.counts: Counter = Counter()
        self.info: BagInfo | None = None
        self.custom_data: dict[str, str] = {}  # rosbag2 metadata custom_data
        self.topics: dict[str, str] = {}
        self._files: list[Path] = []  # files to scan record by record (no usable index)
        self._reader = None
        if self.path.is_dir() and (self.path / "metadata.yaml").is_file():
            self._open_rosbag2()
        else:
            self._files = sorted(self.path.glob("*.mcap")) if self.path.is_dir() else [self.path]
            if not self._files or any(f.suffix != ".mcap" for f in self._files):
                raise DatasetError(f"{self.path} is not a bag: expected a rosbag2 folder (metadata.yaml with "
                                   ".mcap or .db3 files) or an .mcap file")
            if self.path.is_dir():  # an .mcap file given alone needs no metadata
                self.problem("no_metadata", f"{self.path}: no metadata.yaml (a recording that was not closed?); "
                                            "reading the .mcap file(s) record by record")
        if self._files:
            for file in self._files:
                self.topics.update(McapScan(file).topics())

    def _open_rosbag2(self) -> None:
        import yaml

        require_rosbags()
        from rosbags.rosbag2 import Reader

        try:
            metadata = yaml.safe_load((self.path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as error:
            raise DatasetError(f"{self.path}/metadata.yaml is not rosbag2 metadata ({error})") from error
        custom = metadata.get("custom_data") or {}
        self.custom_data = dict(custom)
        if CUSTOM_DATA_KEY in custom:
            try:
                self.info = BagInfo.from_json(custom[CUSTOM_DATA_KEY])
            except (ValueError, KeyError, TypeError) as error:
                self.problem("bad_metadata", f"{self.path}: custom_data {CUSTOM_DATA_KEY!r} unreadable ({error})")
        reader = Reader(self.path)
        try:
            reader.open()
        except Exception as error:  # noqa: BLE001 - rosbags raises several types for damaged files
            files = [self.path / p for p in metadata.get("relative_file_paths") or []]
            self._files = [f for f in files if f.is_file() and f.suffix == ".mcap"]
            if metadata.get("storage_identifier") != "mcap" or not self._files:
                raise DatasetError(f"cannot read bag {self.path}: {type(error).__name__}: {error}") from error
            self.problem("corrupt_bag", f"{self.path}: cannot be opened by its index ({error}); reading "
                                        "the .mcap file(s) record by record up to the damage")
            return
        self._reader = reader
        self.topics = {c.topic: c.msgtype for c in reader.connections}

    def problem(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append(f"{kind}: {message}")

    def check_topics(self, expected: dict[str, tuple[str, ...]]) -> dict[str, str]:
        """Of `expected` (topic -> accepted types), the topics present with an accepted type;
        a topic present with another type is reported as unknown_type."""
        usable = {}
        for topic, types in expected.items():
            found = self.topics.get(topic)
            if found is None:
                continue
            if found in types:
                usable[topic] = found
            else:
                self.problem("unknown_type", f"{self.path}: topic {topic} has type {found}, expected "
                                             f"{' or '.join(types)}; its messages are not used")
        return usable

    def count(self, topics: Iterable[str]) -> int | None:
        """Messages on `topics` by the bag's index (None for files read record by record)."""
        if self._reader is None:
            return None
        wanted = set(topics)
        return sum(c.msgcount for c in self._reader.connections if c.topic in wanted)

    def messages(self, topics: Iterable[str]) -> Iterator[BagMessage]:
        """Deserialized messages of `topics` in time order (file order for scanned files)."""
        for raw in self.raw(topics):
            msg = self.deserialize(raw)
            if msg is not None:
                yield BagMessage(raw.topic, raw.log_time, msg)

    def deserialize(self, raw: "RawMessage"):
        """A raw message's rosbags dataclass, or None (reported as bad_message) when its CDR is
        malformed."""
        try:
            return typestore().deserialize_cdr(raw.data, raw.msgtype)
        except Exception as error:  # noqa: BLE001 - any malformed CDR: name it, go on
            self.problem("bad_message", f"{self.path}: {raw.topic} message at {_stamp(raw.log_time)} cannot be "
                                        f"deserialized as {raw.msgtype} ({type(error).__name__}: {error})")
            return None

    def find(self, topic: str, stamp: int, window: int = 2 * NS):
        """The message of `topic` whose header is stamped `stamp` (ns), recorded within `window`
        after it (images for the plots); DatasetError when there is none or the bag is damaged."""
        if self._reader is not None:
            connections = [c for c in self._reader.connections if c.topic == topic]
            for connection, log_time, data in self._reader.messages(connections=connections, start=stamp,
                                                                    stop=stamp + window):
                msg = self.deserialize(RawMessage(topic, connection.msgtype, log_time, data))
                if msg is not None and msg.header.stamp.sec * NS + msg.header.stamp.nanosec == stamp:
                    return msg
        raise DatasetError(f"{self.path}: no {topic} message stamped {_stamp(stamp)} can be read back")

    def raw(self, topics: Iterable[str]) -> Iterator["RawMessage"]:
        """Serialized (CDR) messages of `topics` in time order, up to any damage."""
        wanted = set(topics)
        if self._reader is not None:
            connections = [c for c in self._reader.connections if c.topic in wanted]
            if not connections:
                return
            iterator = self._reader.messages(connections=connections)
            count, last = 0, None
            while True:
                try:
                    connection, log_time, data = next(iterator)
                except StopIteration:
                    return
                except Exception as error:  # noqa: BLE001 - a damaged file: stop here, keep what came before
                    self.problem("corrupt_bag", f"{self.path}: reading stopped after {count} messages"
                                                f"{'' if last is None else ' (last at ' + _stamp(last) + ')'}: "
                                                f"{type(error).__name__}: {error}")
                    return
                count, last = count + 1, log_time
                yield RawMessage(connection.topic, connection.msgtype, log_time, data)
            return
        for file in self._files:
            count, last = 0, None
            try:
                for raw in McapScan(file):
                    if raw.topic in wanted:
                        count, last = count + 1, raw.log_time
                        yield raw
            except (McapDamage, OSError) as error:
                self.problem("corrupt_bag", f"{file}: cut off or damaged ({error}); used the {count} messages "
                                            f"before it{'' if last is None else ' (last at ' + _stamp(last) + ')'}")

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _stamp(ns: int) -> str:
    sec, nanosec = divmod(int(ns), NS)
    return f"{sec}.{nanosec:09d}"
