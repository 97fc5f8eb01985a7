"""MCAP files read record by record, for files whose end is missing or damaged.

A recorder that was killed, a full disk or a broken copy leave an MCAP file without its
footer and index, which indexed readers (rosbags included) refuse at open. This reader walks
the records from the start (https://mcap.dev/spec: opcode u8, length u64, body) and stops at
the first one that is cut off or malformed, so everything before the damage is still used.
Chunks may be uncompressed, lz4 or zstd (the decompressors rosbags itself uses).
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

MAGIC = b"\x89MCAP0\r\n"
OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK, OP_DATA_END, OP_FOOTER = 0x03, 0x04, 0x05, 0x06, 0x0F, 0x02


class McapDamage(Exception):
    """The file is cut off or malformed at `offset` (bytes)."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} at byte {offset}")
        self.offset = offset


@dataclass(frozen=True)
class RawMessage:
    topic: str
    msgtype: str
    log_time: int  # ns
    data: bytes  # CDR


class McapScan:
    """Messages of one MCAP file in file order; `channels` fills in as they are met.

    Iterating raises McapDamage at the first cut-off or malformed record (after yielding
    every message before it).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.channels: dict[int, tuple[str, str]] = {}  # id -> (topic, message type)
        self._schemas: dict[int, str] = {}

    def topics(self) -> dict[str, str]:
        """Topic -> type of every channel in the file (a full scan, stops at damage)."""
        try:
            for _ in self._records(read_messages=False):
                pass
        except McapDamage:
            pass
        return {topic: msgtype for topic, msgtype in self.channels.values()}

    def __iter__(self) -> Iterator[RawMessage]:
        yield from self._records(read_messages=True)

    def _records(self, read_messages: bool) -> Iterator[RawMessage]:
        with open(self.path, "rb") as handle:
            if handle.read(8) != MAGIC:
                raise McapDamage(f"{self.path} is not an MCAP file (bad magic)", 0)
            size = self.path.stat().st_size
            yield from self._walk(handle, size, read_messages, where="")

    def _walk(self, stream: BinaryIO, size: int, read_messages: bool, where: str) -> Iterator[RawMessage]:
        """Records of `stream` (`size` bytes) until its end, a data-end or footer record."""
        while True:
            start = stream.tell()
            if start == size:
                return  # clean end of a chunk, or a file that lost only its summary and footer
            head = stream.read(9)
            if len(head) < 9:
                raise McapDamage(f"record header cut off{where}", start)
            opcode, length = head[0], struct.unpack("<Q", head[1:])[0]
            if opcode in (OP_DATA_END, OP_FOOTER):
                return
            if start + 9 + length > size:
                raise McapDamage(f"record (opcode 0x{opcode:02x}, {length} bytes) cut off{where}", start)
            if opcode in (OP_CHUNK, OP_SCHEMA, OP_CHANNEL) or (opcode == OP_MESSAGE and read_messages):
                body = stream.read(length)
                try:
                    yield from self._record(opcode, body, read_messages, start)
                except (struct.error, UnicodeDecodeError, KeyError, ValueError) as error:
                    raise McapDamage(f"malformed record (opcode 0x{opcode:02x}){where}: {error}", start) from None
            else:
                stream.seek(length, io.SEEK_CUR)

    def _record(self, opcode: int, body: bytes, read_messages: bool, offset: int) -> Iterator[RawMessage]:
        if opcode == OP_SCHEMA:
            schema_id, = struct.unpack_from("<H", body)
            name, _ = _string(body, 2)
            self._schemas[schema_id] = name
        elif opcode == OP_CHANNEL:
            channel_id, schema_id = struct.unpack_from("<HH", body)
            topic, _ = _string(body, 4)
            self.channels[channel_id] = (topic, self._schemas.get(schema_id, ""))
        elif opcode == OP_MESSAGE:
            channel_id, _, log_time, _ = struct.unpack_from("<HIQQ", body)
            topic, msgtype = self.channels[channel_id]
            yield RawMessage(topic, msgtype, log_time, body[22:])
        elif opcode == OP_CHUNK:
            _, _, size, _ = struct.unpack_from("<QQQI", body)
            compression, at = _string(body, 28)
            length, = struct.unpack_from("<Q", body, at)
            records = _decompress(body[at + 8: at + 8 + length], compression, size)
            yield from self._walk(io.BytesIO(records), len(records), read_messages, f" in the chunk at byte {offset}")


def _string(body: bytes, offset: int) -> tuple[str, int]:
    """A u32-length-prefixed UTF-8 string at `offset`; returns it and the offset after it."""
    length, = struct.unpack_from("<I", body, offset)
    end = offset + 4 + length
    if end > len(body):
        raise ValueError("string runs past its record")
    return body[offset + 4: end].decode("utf-8"), end


def _decompress(data: bytes, compression: str, size: int) -> bytes:
    if compression == "":
        return data
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    if compression == "zstd":
        try:
            from compression import zstd  # Python 3.14
        except ImportError:
            try:
                from backports import zstd  # a dependency of rosbags before 3.14
            except ImportError:
                raise ValueError("chunk is zstd-compressed: pip install backports.zstd") from None
        return zstd.decompress(data)
    raise ValueError(f"unknown chunk compression {compression!r}")
