"""GGUF and safetensors headers: agreement with the official gguf reader, and every way a
header can be wrong failing with a clear message (never a crash, never a huge allocation)."""

from __future__ import annotations

import contextlib
import json
import struct
from pathlib import Path

import gguf
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from managerkit import manager_settings

from downloader.errors import FormatError
from downloader.formats import inspect_files, read_gguf, read_safetensors
from downloader.formats.gguf import GGML_TYPES
from downloader.json_shapes import file_json
from downloader.manager import DownloadManager
from downloader.testing.modelfiles import gguf_bytes, safetensors_bytes, split_gguf
from downloader.testing.origin import Origin
from storage import TaskState

SMALL_GGUF = gguf_bytes(size=3000, architecture="qwen2", name="tiny", context_length=32768)
SMALL_ST = safetensors_bytes({"a.weight": (4, 8), "b.bias": (8,)}, metadata={"format": "pt"})


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": 1000},
        {"size": 700_000, "architecture": "qwen2", "file_type": 15, "context_length": 131072},
        {"size": 3 << 20, "extra": {"tokenizer.ggml.tokens": [f"t{i}" for i in range(500)]}},
    ],
)
def test_our_gguf_reader_agrees_with_the_official_one(tmp_path: Path, kwargs) -> None:
    path = write(tmp_path, "m.gguf", gguf_bytes(**kwargs))
    ours, theirs = read_gguf(path), gguf.GGUFReader(path)
    assert ours.data_offset == theirs.data_offset
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    assert [t.nbytes for t in ours.tensors] == [int(t.n_bytes) for t in theirs.tensors]
    assert [t.offset + ours.data_offset for t in ours.tensors] == [
        int(t.data_offset) for t in theirs.tensors
    ]
    assert ours.parameter_count == sum(int(t.n_elements) for t in theirs.tensors)
    fields = theirs.fields
    arch = fields["general.architecture"].contents()
    assert ours.architecture == arch == kwargs.get("architecture", "llama")
    assert ours.name == fields["general.name"].contents()
    assert ours.context_length == fields[f"{arch}.context_length"].contents()
    if kwargs.get("file_type") == 15:
        assert ours.quantization == "Q4_K_M"
    if "extra" in kwargs:
        assert ours.metadata["tokenizer.ggml.tokens"].count == 500
        assert len(fields["tokenizer.ggml.tokens"].contents()) == 500


def test_our_ggml_type_sizes_are_the_official_ones() -> None:
    official = {int(k): v for k, v in gguf.GGML_QUANT_SIZES.items()}
    for code, (name, block, size) in GGML_TYPES.items():
        assert official[code] == (block, size), name
        assert gguf.GGMLQuantizationType(code).name == name


def test_a_valid_safetensors_header_reads_back(tmp_path: Path) -> None:
    info = read_safetensors(write(tmp_path, "m.safetensors", SMALL_ST))
    assert info.tensors == {"a.weight": ("F32", (4, 8)), "b.bias": ("F32", (8,))}
    assert info.metadata == {"format": "pt"} and info.parameter_count == 40


@pytest.mark.parametrize("keep", [0, 3, 4, 8, 23, 100, len(SMALL_GGUF) // 2, len(SMALL_GGUF) - 1])
def test_every_truncated_gguf_fails_naming_why(tmp_path: Path, keep: int) -> None:
    path = write(tmp_path, "m.gguf", SMALL_GGUF[:keep])
    with pytest.raises(FormatError, match=r"^not a valid GGUF: ") as raised:
        read_gguf(path)
    assert "truncated" in str(raised.value) or "not b'GGUF'" in str(raised.value)


@pytest.mark.parametrize("keep", [0, 7, 8, 20, len(SMALL_ST) - 1])
def test_every_truncated_safetensors_fails_naming_why(tmp_path: Path, keep: int) -> None:
    with pytest.raises(FormatError, match=r"^not a valid safetensors file: "):
        read_safetensors(write(tmp_path, "m.safetensors", SMALL_ST[:keep]))


def _gguf_head(tensors: int, kvs: int, body: bytes = b"") -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, tensors, kvs) + body


def _st(header: dict | bytes, data: bytes = b"", length: int | None = None) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


HOSTILE_GGUF = {
    "absurd tensor count": (_gguf_head(2**63, 0), "claims"),
    "absurd metadata count": (_gguf_head(0, 2**62), "claims"),
    "a key longer than the file": (_gguf_head(0, 1, struct.pack("<Q", 2**64 - 1)), "past the end"),
    "an array of 2**60 items": (
        _gguf_head(0, 1, struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 2**60)),
        "past the end",
    ),
    "an undefined value type": (
        _gguf_head(0, 1, struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99)),
        "value type 99",
    ),
    "version 1": (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "version 1"),
    "an HTML error page": (b"<!DOCTYPE html><html>Access denied</html>", "not b'GGUF'"),
}


@pytest.mark.parametrize("name", HOSTILE_GGUF)
def test_hostile_gguf_headers_fail_cleanly(tmp_path: Path, name: str) -> None:
    data, says = HOSTILE_GGUF[name]
    with pytest.raises(FormatError, match="not a valid GGUF") as raised:
        read_gguf(write(tmp_path, "m.gguf", data))
    assert says in str(raised.value)


def _tensor_gguf(*tensors: tuple[str, list[int], int, int], data: int) -> bytes:
    body = b""
    for name, shape, ggml_type, offset in tensors:
        body += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(shape))
        body += b"".join(struct.pack("<Q", d) for d in shape) + struct.pack(
            "<IQ", ggml_type, offset
        )
    head = _gguf_head(len(tensors), 0, body)
    return head + b"\0" * (-len(head) % 32) + b"\0" * data


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_tensor_gguf(("a", [8], 0, 0), ("b", [8], 0, 0), data=64), "overlap"),
        (_tensor_gguf(("a", [8], 0, 0), data=16), "ends at byte"),
        (_tensor_gguf(("a", [8], 0, 3), data=64), "not aligned"),
        (_tensor_gguf(("a", [8], 77, 0), data=64), "ggml type 77"),
        (_tensor_gguf(("a", [2**40, 2**40], 0, 0), data=64), "has shape"),
        (_tensor_gguf(("a", [33], 2, 0), data=64), "not a multiple of 32"),
    ],
)
def test_inconsistent_gguf_tensors_fail_naming_the_tensor(tmp_path: Path, data, says) -> None:
    with pytest.raises(FormatError, match=says):
        read_gguf(write(tmp_path, "m.gguf", data))


F32 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
HOSTILE_ST = {
    "a header length of 2**63": (_st({}, length=2**63), "limit"),
    "a header past the end": (_st({}, length=5000), "past the end"),
    "not JSON": (_st(b"{nope"), "not JSON"),
    "a JSON list": (_st(b"[1,2]"), "not a JSON object"),
    "negative offsets": (_st({"t": {**F32, "data_offsets": [-8, 0]}}, b"\0" * 8), "data_offsets"),
    "overlapping tensors": (
        _st({"t": F32, "u": {**F32, "data_offsets": [4, 12]}}, b"\0" * 12),
        "overlaps",
    ),
    "a gap": (_st({"t": {**F32, "data_offsets": [8, 16]}}, b"\0" * 16), "gap"),
    "offsets past the data": (_st({"t": F32}, b"\0" * 4), "truncated"),
    "trailing bytes": (_st({"t": F32}, b"\0" * 9), "trailing"),
    "a wrong size for its shape": (_st({"t": {**F32, "shape": [3]}}, b"\0" * 8), "needs 12"),
    "an unknown dtype": (_st({"t": {**F32, "dtype": "Q7"}}, b"\0" * 8), "unknown dtype"),
    "a boolean shape": (_st({"t": {**F32, "shape": [True]}}, b"\0" * 8), "shape"),
    "non-string metadata": (_st({"__metadata__": {"a": 1}}), "__metadata__"),
}


@pytest.mark.parametrize("name", HOSTILE_ST)
def test_hostile_safetensors_headers_fail_cleanly(tmp_path: Path, name: str) -> None:
    data, says = HOSTILE_ST[name]
    with pytest.raises(FormatError, match="not a valid safetensors file") as raised:
        read_safetensors(write(tmp_path, "m.safetensors", data))
    assert says in str(raised.value)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flips=st.lists(st.tuples(st.integers(0, len(SMALL_GGUF) - 1), st.integers(1, 255)), max_size=4),
    cut=st.integers(0, len(SMALL_GGUF)),
)
def test_bit_flipped_or_cut_gguf_parses_or_fails_cleanly(tmp_path: Path, flips, cut) -> None:
    data = bytearray(SMALL_GGUF)
    for at, mask in flips:
        data[at] ^= mask
    path = write(tmp_path, "m.gguf", bytes(data[:cut]))
    try:
        info = read_gguf(path)
    except FormatError as e:
        assert str(e).startswith("not a valid GGUF: ")
    else:  # a flip in the tensor data (or a harmless one): the header still holds together
        assert info.data_offset + sum(t.nbytes for t in info.tensors) <= len(data[:cut])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    flips=st.lists(st.tuples(st.integers(0, len(SMALL_ST) - 1), st.integers(1, 255)), max_size=4),
    cut=st.integers(0, len(SMALL_ST)),
)
def test_bit_flipped_or_cut_safetensors_parses_or_fails_cleanly(tmp_path: Path, flips, cut) -> None:
    data = bytearray(SMALL_ST)
    for at, mask in flips:
        data[at] ^= mask
    try:
        info = read_safetensors(write(tmp_path, "m.safetensors", bytes(data[:cut])))
    except FormatError as e:
        assert str(e).startswith("not a valid safetensors file: ")
    else:
        assert 8 + info.header_size <= cut


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_the_magic_never_crash(tmp_path: Path, tail: bytes) -> None:
    for name, head in (("m.gguf", b"GGUF"), ("m.safetensors", b"")):
        with contextlib.suppress(FormatError):
            (read_gguf if name.endswith("gguf") else read_safetensors)(
                write(tmp_path, name, head + tail)
            )


def test_split_gguf_parts_must_all_be_there_and_agree(tmp_path: Path) -> None:
    parts = split_gguf("model", [4000, 5000, 6000])
    files = [(name, write(tmp_path, name, data)) for name, data in parts.items()]
    summaries = inspect_files(files, complete=True)
    assert set(summaries) == set(parts)
    with pytest.raises(FormatError, match="missing part"):
        inspect_files(files[:2], complete=True)
    inspect_files(files[:2], complete=False)  # one part fetched on its own is fine
    wrong = write(tmp_path, "x-00002-of-00003.gguf", parts["model-00001-of-00003.gguf"])
    with pytest.raises(FormatError, match="part 2 of 3 by its name"):
        inspect_files([("x-00002-of-00003.gguf", wrong)], complete=False)


def test_a_safetensors_index_must_name_present_shards_holding_its_tensors(tmp_path: Path) -> None:
    shard = write(tmp_path, "s1.safetensors", safetensors_bytes({"w1": (4,)}))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w1": "s1.safetensors"}}))
    inspect_files([("s1.safetensors", shard), (index.name, index)], complete=True)
    index.write_text(json.dumps({"weight_map": {"w1": "s1.safetensors", "w2": "s2.safetensors"}}))
    with pytest.raises(FormatError, match=r"maps 'w2' to s2\.safetensors, which is missing"):
        inspect_files([("s1.safetensors", shard), (index.name, index)], complete=True)
    index.write_text(json.dumps({"weight_map": {"w9": "s1.safetensors"}}))
    with pytest.raises(FormatError, match="which does not hold it"):
        inspect_files([("s1.safetensors", shard), (index.name, index)], complete=True)


async def test_a_garbled_gguf_fails_its_task_and_a_good_one_records_its_header(
    tmp_path: Path,
) -> None:
    good = gguf_bytes(size=600_000, architecture="qwen2", file_type=15, seed=4)
    async with (
        Origin({"good.gguf": good, "cut.gguf": good[:-1000]}) as origin,
        DownloadManager(manager_settings(tmp_path / "home")) as manager,
    ):
        ok = await manager.add(origin.url("good.gguf"), dest=tmp_path / "good.gguf")
        bad = await manager.add(origin.url("cut.gguf"), dest=tmp_path / "cut.gguf")
        ok, bad = await manager.wait(ok.id), await manager.wait(bad.id)
        [ok_file] = await manager.files(ok.id)
    assert bad.state is TaskState.FAILED
    assert bad.error.startswith("not a valid GGUF: cut.gguf: tensor 'blk.2.weight' ends at byte")
    assert ok.state is TaskState.COMPLETED
    header = file_json(ok_file)["format"]
    assert header["architecture"] == "qwen2" and header["quantization"] == "Q4_K_M"
    assert header["parameters"] == read_gguf(tmp_path / "good.gguf").parameter_count
