"""Hypothesis against every parser of outside input: download specs, GGUF and safetensors
headers, and the checks across a model's files. Whatever the input, a parser returns or
raises its own error (``SpecError``, ``FormatError``), in bounded time and memory; what it
accepts is safe to use (specs) and what the official gguf reader reads the same way.

``MODELHAUL_FUZZ_EXAMPLES`` raises the number of examples per property (default 250);
``MODELHAUL_FUZZ_RANDOM=1`` draws new ones (by default every run tries the same)."""

from __future__ import annotations

import json
import os
import struct
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gguf
import pytest
from huggingface_hub.utils import HFValidationError, validate_repo_id
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from downloader.errors import FormatError, SpecError
from downloader.formats import inspect_files, read_gguf, read_safetensors
from downloader.formats.gguf import GGML_TYPES, GGUFInfo
from downloader.formats.safetensors import SafetensorsInfo
from downloader.paths import check_relpath
from downloader.specs import Spec, check_url, ollama_spec, parse_spec, repo_spec
from downloader.testing.modelfiles import gguf_bytes, safetensors_bytes, split_gguf

EXAMPLES = int(os.environ.get("MODELHAUL_FUZZ_EXAMPLES", "250"))
# The same examples on every run unless MODELHAUL_FUZZ_RANDOM is set: CI must not turn red on a
# draw; exploring (random examples, more of them) is a run of its own.
DERANDOMIZE = not os.environ.get("MODELHAUL_FUZZ_RANDOM")
fuzz = settings(
    max_examples=EXAMPLES,
    derandomize=DERANDOMIZE,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
# A small file's parse: generous for a loaded CI machine, far below what an unbounded loop
# over a claimed count (2**60 items) would take.
SECONDS = 5.0
T = TypeVar("T")


def bounded(parse: Callable[[], T], *, input_bytes: int) -> T:
    """``parse()``, checking that it took little time and allocated at most a small multiple
    of the input's real size (never of a length or count the input claims)."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        return parse()
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert elapsed < SECONDS, f"took {elapsed:.1f} s"
        assert peak < (2 << 20) + 32 * input_bytes, f"allocated {peak} bytes"


# --- specs ---------------------------------------------------------------------------------

# Characters that mean something to a parser, a path, a URL or a terminal.
TRICKY = "/\\.:@[]%?#*~^{}$ \t\n\r\x00\x7f\x1b-_éß\u202e\ud800\U0001f600aAzZ09"
tricky_text = st.text(alphabet=st.sampled_from(TRICKY), max_size=40)
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=60)
SCHEMES = ["", "hf://", "HF://", "huggingface://", "mlx://", "ollama://", "http://", "https://"]
spec_text = st.one_of(
    any_text,
    st.builds(lambda s, rest: s + rest, st.sampled_from(SCHEMES), st.one_of(tricky_text, any_text)),
    st.builds(
        lambda s, parts, sep: s + sep.join(parts),
        st.sampled_from(SCHEMES),
        st.lists(
            st.sampled_from(["a", "..", ".", "", "x.y", "a@b", "m:t", "h:1", "Q-1_2"]),
            min_size=1,
            max_size=5,
        ),
        st.sampled_from(["/", ":", "@"]),
    ),
)


def _assert_safe(spec: Spec) -> None:
    """What a spec promises the sources that build paths and URLs from it."""
    assert spec.label.encode()  # writable to the ledger as UTF-8
    if spec.provider in ("huggingface", "mlx"):
        validate_repo_id(spec.source)  # the Hub's own rules (raises if broken)
        for part in spec.source.split("/"):
            check_relpath(part)
        if spec.revision is not None:
            check_relpath(spec.revision, what="revision")
        for pattern in spec.patterns or ():
            check_relpath(pattern)
    elif spec.provider == "ollama":
        name = spec.source.rsplit(":", 1)[0] if ":" in spec.source.split("/")[-1] else spec.source
        tag = spec.source.split("/")[-1].partition(":")[2]
        for part in [*name.split("/"), *([tag] if tag else [])]:
            assert len(check_relpath(part)) == 1  # one folder of the manifest path, never ..
    else:
        assert spec.provider == "url"
        assert spec.source.split(":", 1)[0].lower() in ("http", "https")
        assert not any(ord(c) < 32 or ord(c) == 127 for c in spec.source)


@fuzz
@given(spec_text)
def test_parse_spec_returns_a_safe_spec_or_a_spec_error(text: str) -> None:
    try:
        spec = bounded(lambda: parse_spec(text), input_bytes=len(text) * 4)
    except SpecError as e:
        assert str(e)
        return
    _assert_safe(spec)
    assert parse_spec(spec.label) == spec  # the label names the same download


@fuzz
@given(st.one_of(tricky_text, any_text, st.builds(lambda r: "http://" + r, tricky_text)))
@example("http://[::1")  # urlsplit's ValueError was a 500
@example("http://@[v1.x]@?x")  # yarl's IndexError
@example("http://x:99999/")
def test_check_url_returns_an_http_url_or_a_spec_error(text: str) -> None:
    try:
        url = check_url(text)
    except SpecError:
        return
    assert url == text.strip() and url.split(":", 1)[0].lower() in ("http", "https")


name_part = st.one_of(
    tricky_text, st.sampled_from(["a", "..", ".", "x..", "_x", "q4_K_M", "h:11434", "a" * 81])
)


@fuzz
@given(st.lists(name_part, min_size=1, max_size=4), st.one_of(st.none(), name_part))
def test_ollama_names_follow_ollamas_rules_or_fail_as_spec_errors(parts, tag) -> None:
    name = "/".join(parts) + (f":{tag}" if tag is not None else "")
    try:
        spec = ollama_spec(name)
    except SpecError:
        return
    _assert_safe(spec)


@fuzz
@given(
    repo=st.one_of(tricky_text, st.builds(lambda a, b: f"{a}/{b}", name_part, name_part)),
    revision=st.one_of(st.none(), tricky_text, st.sampled_from(["main", "refs/pr/1", "a..b"])),
    patterns=st.one_of(st.none(), st.lists(st.one_of(tricky_text, st.just("*.gguf")), max_size=3)),
)
def test_repo_specs_are_hub_legal_or_spec_errors(repo, revision, patterns) -> None:
    try:
        spec = repo_spec(
            "huggingface",
            repo,
            revision=revision,
            patterns=None if patterns is None else tuple(patterns),
        )
    except SpecError:
        return
    _assert_safe(spec)


def test_our_repo_ids_are_the_hubs() -> None:
    for repo in ("a/b", "Qwen/Qwen2.5-0.5B-Instruct", "a_/b_", "x/y.z"):
        validate_repo_id(repo_spec("huggingface", repo).source)
    for repo in ("a--b/c", "a/b..c", "a/b.git", "a/-b", "a/b-", "../x", "a/."):
        with pytest.raises(HFValidationError):
            validate_repo_id(repo)
        with pytest.raises(SpecError, match="not a Hugging Face repo id"):
            repo_spec("huggingface", repo)


# --- GGUF ----------------------------------------------------------------------------------

U8, I32, U32, F32, BOOL, STRING, ARRAY, U64, F64 = 0, 5, 4, 6, 7, 8, 9, 10, 12
SCALAR_FORMATS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q"}
SCALAR_FORMATS |= {11: "q", 12: "d"}


@dataclass(frozen=True)
class Field:
    """Where one number or string of a GGUF header is: for mutating it in place."""

    at: int
    width: int  # bytes: 4 or 8 for numbers, the length for a string's bytes
    kind: str  # "count", "length", "type", "dim", "offset", "bytes", "scalar"


def gguf_fields(data: bytes) -> list[Field]:
    """Every field of a valid GGUF header (the kind ``gguf_bytes`` writes), in file order."""
    fields = [Field(4, 4, "version"), Field(8, 8, "count"), Field(16, 8, "count")]
    tensors, kvs = struct.unpack_from("<QQ", data, 8)
    at = 24

    def string() -> None:
        nonlocal at
        (n,) = struct.unpack_from("<Q", data, at)
        fields.extend([Field(at, 8, "length"), Field(at + 8, n, "bytes")])
        at += 8 + n

    def number(width: int, kind: str) -> int:
        nonlocal at
        (value,) = struct.unpack_from("<I" if width == 4 else "<Q", data, at)
        fields.append(Field(at, width, kind))
        at += width
        return value

    def value(kind: int) -> None:
        nonlocal at
        if kind == STRING:
            string()
        elif kind == ARRAY:
            item, count = number(4, "type"), number(8, "count")
            for _ in range(count):
                value(item)
        else:
            width = struct.calcsize("<" + SCALAR_FORMATS[kind])
            fields.append(Field(at, width, "scalar"))
            at += width

    for _ in range(kvs):
        string()
        value(number(4, "type"))
    for _ in range(tensors):
        string()
        for _ in range(number(4, "count")):
            number(8, "dim")
        number(4, "type")
        number(8, "offset")
    return fields


def _gguf_value(kind: int, value: Any) -> bytes:
    if kind not in SCALAR_FORMATS and kind != STRING:  # a type GGUF does not define
        return bytes(value)
    if kind == STRING:
        raw = value if isinstance(value, bytes) else str(value).encode()
        return struct.pack("<Q", len(raw)) + raw
    return struct.pack("<" + SCALAR_FORMATS[kind], value)


def encode_gguf(
    kvs: list[tuple[bytes, int, Any]], tensors: list[tuple[bytes, list[int], int, int]], data: int
) -> bytes:
    """A GGUF v3 file from raw parts (keys as bytes, any types): valid or not, as given.
    An ARRAY value is ``(item type, [items])``."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for key, kind, value in kvs:
        head += struct.pack("<Q", len(key)) + key + struct.pack("<I", kind)
        if kind == ARRAY:
            item, items = value
            head += struct.pack("<IQ", item, len(items))
            head += b"".join(_gguf_value(item, v) for v in items)
        else:
            head += _gguf_value(kind, value)
    for name, shape, ggml_type, offset in tensors:
        head += struct.pack("<Q", len(name)) + name + struct.pack("<I", len(shape))
        head += b"".join(struct.pack("<Q", d) for d in shape)
        head += struct.pack("<IQ", ggml_type, offset)
    return head + b"\0" * (-len(head) % 32) + b"\x01" * data


BASE_GGUF = gguf_bytes(size=1500, name="tiny", extra={"tokenizer.ggml.tokens": ["a", "bc"] * 10})
BASE_FIELDS = gguf_fields(BASE_GGUF)
HOSTILE_NUMBERS = [0, 1, 2, 3, 7, 8, 31, 32, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63]
HOSTILE_NUMBERS += [2**64 - 1, len(BASE_GGUF), len(BASE_GGUF) - 24, len(BASE_GGUF) + 1]


@st.composite
def mutated_gguf(draw: st.DrawFn) -> bytes:
    """``BASE_GGUF`` with a few structured changes: a number (count, length, type, dim,
    offset) set to a hostile value, a string made non-UTF-8 or a copy of another, bytes
    flipped, the file cut or extended."""
    data = bytearray(BASE_GGUF)
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(BASE_FIELDS))
        how = draw(st.sampled_from(["number", "garble", "copy", "flip"]))
        if field.kind == "bytes" and how in ("garble", "copy"):
            if how == "garble":
                junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"/", b"\xed\xa0\x80"]))
                data[field.at : field.at + field.width] = (junk * field.width)[: field.width]
            else:  # a duplicate key or tensor name, where lengths allow
                same = [f for f in BASE_FIELDS if f.kind == "bytes" and f.width == field.width]
                other = draw(st.sampled_from(same))
                data[field.at : field.at + field.width] = BASE_GGUF[
                    other.at : other.at + other.width
                ]
        elif field.kind != "bytes" and how == "number":
            limit = 2 ** (8 * field.width) - 1
            value = draw(
                st.one_of(
                    st.sampled_from([n for n in HOSTILE_NUMBERS if n <= limit]),
                    st.integers(0, limit),
                    st.integers(0, 64),
                )
            )
            data[field.at : field.at + field.width] = value.to_bytes(field.width, "little")
        else:
            at = draw(st.integers(field.at, field.at + max(field.width, 1) - 1))
            data[at] ^= draw(st.integers(1, 255))
    tail = draw(st.sampled_from(["keep", "cut", "extend"]))
    if tail == "cut":
        data = data[: draw(st.integers(0, len(data)))]
    elif tail == "extend":
        data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


gguf_key = st.one_of(
    st.sampled_from([b"general.alignment", b"general.architecture", b"split.no", b"k", b""]),
    st.binary(max_size=12),
)
gguf_scalar_kind = st.sampled_from(sorted(SCALAR_FORMATS))


def _scalar(kind: int) -> st.SearchStrategy[Any]:
    code = SCALAR_FORMATS[kind]
    if code in "fd":
        return st.floats(width=32 if code == "f" else 64)
    if code == "?":
        return st.booleans()
    bits = struct.calcsize(code) * 8
    return (
        st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if code.islower()
        else (st.integers(0, 2**bits - 1))
    )


@st.composite
def gguf_kv(draw: st.DrawFn) -> tuple[bytes, int, Any]:
    key = draw(gguf_key)
    kind = draw(st.sampled_from([*SCALAR_FORMATS, STRING, ARRAY, 99]))
    if kind == STRING:
        return key, kind, draw(st.binary(max_size=20))
    if kind == ARRAY:
        item = draw(st.sampled_from([*SCALAR_FORMATS, STRING, ARRAY]))
        if item == STRING:
            return key, kind, (item, draw(st.lists(st.binary(max_size=5), max_size=20)))
        if item == ARRAY:
            return key, kind, (item, [])
        return key, kind, (item, draw(st.lists(_scalar(item), max_size=20)))
    if kind == 99:
        return key, kind, b"\0" * 4
    return key, kind, draw(_scalar(kind))


@st.composite
def gguf_tensor(draw: st.DrawFn) -> tuple[bytes, list[int], int, int]:
    name = draw(st.one_of(st.sampled_from([b"w", b"b", b"blk.0.weight"]), st.binary(max_size=6)))
    shape = draw(
        st.lists(
            st.one_of(st.sampled_from([1, 8, 32, 256, 2**63]), st.integers(0, 600)), max_size=5
        )
    )
    ggml_type = draw(st.one_of(st.sampled_from(sorted(GGML_TYPES)), st.integers(0, 50)))
    offset = draw(st.one_of(st.sampled_from([0, 32, 64, 96, 2**64 - 32]), st.integers(0, 4096)))
    return name, shape, ggml_type, offset


structured_gguf = st.builds(
    encode_gguf,
    st.lists(gguf_kv(), max_size=6),
    st.lists(gguf_tensor(), max_size=4),
    st.integers(0, 3000),
)


def _gguf_or_format_error(path: Path, size: int) -> GGUFInfo | None:
    try:
        return bounded(lambda: read_gguf(path), input_bytes=size)
    except FormatError as e:
        assert str(e).startswith("not a valid GGUF: ")
        return None


def _agrees_with_the_official_reader(path: Path, ours: GGUFInfo) -> None:
    """A header we accept, the gguf package reads the same (it is what llama.cpp's
    Python tools use); it is laxer than we are, so only this direction holds."""
    theirs = gguf.GGUFReader(path)
    assert ours.data_offset == theirs.data_offset
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    assert [t.nbytes for t in ours.tensors] == [int(t.n_bytes) for t in theirs.tensors]
    assert [ours.data_offset + t.offset for t in ours.tensors] == [
        int(t.data_offset) for t in theirs.tensors
    ]
    assert set(ours.metadata) == set(theirs.fields) - {
        "GGUF.version",
        "GGUF.tensor_count",
        "GGUF.kv_count",
    }


@fuzz
@given(mutated_gguf())
def test_a_mutated_gguf_parses_as_the_official_reader_does_or_fails_cleanly(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    info = _gguf_or_format_error(path, len(data))
    if info is not None:
        _agrees_with_the_official_reader(path, info)
        info.summary()


@fuzz
@given(structured_gguf)
def test_any_gguf_structure_parses_as_the_official_reader_does_or_fails_cleanly(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    info = _gguf_or_format_error(path, len(data))
    if info is not None:
        _agrees_with_the_official_reader(path, info)
        info.summary()


@fuzz
@given(st.binary(max_size=400), st.sampled_from([b"", b"GGUF", b"GGUF\x03\0\0\0"]))
def test_random_bytes_are_never_a_crash(tmp_path: Path, tail: bytes, head: bytes) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(head + tail)
    _gguf_or_format_error(path, len(head + tail))
    path = tmp_path / "m.safetensors"
    path.write_bytes(tail)
    _safetensors_or_format_error(path, len(tail))


def test_generated_ggufs_are_valid_and_read_as_the_official_reader_does(tmp_path: Path) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(BASE_GGUF)
    _agrees_with_the_official_reader(path, read_gguf(path))
    kvs = [(b"general.alignment", U32, 64), (b"k", ARRAY, (STRING, [b"x"] * 40))]
    path.write_bytes(encode_gguf(kvs, [(b"w", [64], 0, 0), (b"b", [8], 1, 256)], data=300))
    _agrees_with_the_official_reader(path, read_gguf(path))


def _sparse(path: Path, head: bytes, size: int) -> Path:
    """``head`` then zeros to ``size`` bytes, without using the disk space."""
    with path.open("wb") as f:
        f.write(head)
        f.truncate(size)
    return path


GiB = 1 << 30


@pytest.mark.parametrize(
    ("name", "head", "says"),
    [
        # Zeros are valid empty keys, tensor names and strings: a count as large as the file
        # allows must fail at once, not be walked item by item.
        (
            "a metadata count the file could hold",
            b"GGUF" + struct.pack("<IQQ", 3, 0, GiB // 13),
            "claims",
        ),
        (
            "a tensor count the file could hold",
            b"GGUF" + struct.pack("<IQQ", 3, GiB // 29, 0),
            "claims",
        ),
        (
            "an array of a hundred million empty strings",
            b"GGUF"
            + struct.pack("<IQQ", 3, 0, 1)
            + _gguf_value(STRING, b"k")
            + struct.pack("<IIQ", ARRAY, STRING, GiB // 8 - 8),
            "strings",
        ),
        (
            "a key of 900 MB",
            b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 900 << 20),
            "key",
        ),
    ],
)
def test_a_huge_claim_in_a_big_file_fails_fast_without_memory(
    tmp_path: Path, name: str, head: bytes, says: str
) -> None:
    path = _sparse(tmp_path / "m.gguf", head, GiB)
    with pytest.raises(FormatError, match=says):
        bounded(lambda: read_gguf(path), input_bytes=len(head))


def test_a_900_mb_string_value_is_skipped_not_read(tmp_path: Path) -> None:
    n = 900 << 20
    head = (
        b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _gguf_value(STRING, b"tokenizer.huggingface.json")
    )
    head += struct.pack("<IQ", STRING, n)
    path = _sparse(tmp_path / "m.gguf", head, len(head) + n)
    info = bounded(lambda: read_gguf(path), input_bytes=len(head))
    assert repr(info.metadata["tokenizer.huggingface.json"]) == f"<a string of {n} bytes>"


# --- safetensors ---------------------------------------------------------------------------

BASE_HEADER: dict[str, Any] = {
    "__metadata__": {"format": "pt"},
    "a.weight": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]},
    "b.bias": {"dtype": "F32", "shape": [8], "data_offsets": [128, 160]},
}
BASE_DATA = 160


def st_file(header: bytes, data: int | bytes = BASE_DATA, length: int | None = None) -> bytes:
    """A safetensors file from a raw header (any bytes) and ``data`` bytes of data."""
    body = data if isinstance(data, bytes) else b"\x01" * data
    return struct.pack("<Q", len(header) if length is None else length) + header + body


def test_the_base_safetensors_file_is_the_one_the_test_kit_writes(tmp_path: Path) -> None:
    made = safetensors_bytes({"a.weight": (4, 8), "b.bias": (8,)})
    (n,) = struct.unpack_from("<Q", made)
    assert json.loads(made[8 : 8 + n]) == BASE_HEADER and len(made) == 8 + n + BASE_DATA


json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 2**63, 2**64, -1, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
entry_field = st.sampled_from(["dtype", "shape", "data_offsets"])
hostile_value = st.one_of(
    json_value,
    st.sampled_from(["F32", "BF16", "F4", "F6_E2M3", "BOOL"]),
    st.lists(st.one_of(st.integers(0, 300), st.sampled_from([2**63, 2**64, 10**30])), max_size=9),
)


@st.composite
def safetensors_header(draw: st.DrawFn) -> bytes:
    """``BASE_HEADER`` with structured changes: entry fields set to hostile values
    (NaN, huge or negative numbers, wrong types), ``__metadata__`` of other types, entries
    added or dropped, then serialized with duplicate keys, deep nesting, raw non-UTF-8
    bytes or 5000-digit numbers spliced in."""
    header = json.loads(json.dumps(BASE_HEADER))
    for _ in range(draw(st.integers(0, 3))):
        target = draw(st.sampled_from(["a.weight", "b.bias", "c", "__metadata__"]))
        if target == "__metadata__":
            header[target] = draw(
                st.one_of(json_value, st.dictionaries(st.text(max_size=4), json_value))
            )
        elif draw(st.booleans()) and isinstance(header.get(target), dict):
            header[target][draw(entry_field)] = draw(hostile_value)
        elif draw(st.booleans()):
            header[target] = draw(json_value)
        else:
            header.pop(target, None)
    text = json.dumps(header, allow_nan=True).encode()
    splice = draw(
        st.sampled_from(
            ["none", "duplicate", "deep", "non-utf8-key", "huge-number", "raw-bytes", "pad"]
        )
    )
    if splice == "duplicate":  # the same tensor twice: which one is meant?
        text = text[:-1] + b', "a.weight": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}'
    elif splice == "deep":
        depth = draw(st.sampled_from([4, 100, 5000, 100_000]))
        text = text[:-1] + b', "z": ' + b"[" * depth + b"]" * depth + b"}"
    elif splice == "non-utf8-key":
        text = text.replace(b'"b.bias"', b'"b.\xff\xfe"')
    elif splice == "huge-number":
        text = text.replace(b"160]", b"1" + b"0" * 5000 + b"]")
    elif splice == "raw-bytes":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    elif splice == "pad":
        text += b" " * draw(st.integers(0, 9))
    return text


@st.composite
def safetensors_file(draw: st.DrawFn) -> bytes:
    header = draw(safetensors_header())
    data = draw(st.sampled_from([BASE_DATA, BASE_DATA - 1, BASE_DATA + 1, 0, 32]))
    length = draw(
        st.one_of(
            st.none(),
            st.sampled_from([0, 1, 2, len(header) - 1, len(header) + 1, 2**63, 2**64 - 1]),
        )
    )
    return st_file(header, data, length)


def _safetensors_or_format_error(path: Path, size: int) -> SafetensorsInfo | None:
    try:
        return bounded(lambda: read_safetensors(path), input_bytes=size)
    except FormatError as e:
        assert str(e).startswith("not a valid safetensors file: ")
        return None


@fuzz
@given(safetensors_file())
def test_a_mutated_safetensors_header_parses_or_fails_cleanly(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(data)
    info = _safetensors_or_format_error(path, len(data))
    if info is not None:  # what it accepts is consistent: every byte of data is a tensor's
        (n,) = struct.unpack_from("<Q", data)
        assert info.header_size == n and info.file_size == len(data)
        assert all(
            isinstance(s, int) and s >= 0 for _, shape in info.tensors.values() for s in shape
        )
        info.summary()


@pytest.mark.parametrize(
    ("name", "header", "says"),
    [
        (
            "a tensor named twice",
            b'{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
            b'"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}',
            "twice",
        ),
        ("100,000 nested lists", b'{"t": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "JSON"),
        (
            "a 5000-digit offset",
            b'{"t": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1' + b"0" * 5000 + b"]}}",
            "JSON",
        ),
        (
            "a shape of a million dimensions",
            b'{"t": {"dtype": "U8", "shape": ['
            + b"2," * 1_000_000
            + b'1], "data_offsets": [0, 1]}}',
            "shape",
        ),
    ],
)
def test_hostile_safetensors_json_fails_cleanly(tmp_path: Path, name, header, says) -> None:
    path = tmp_path / "m.safetensors"
    path.write_bytes(st_file(header + b" " * (-len(header) % 8), data=1))
    with pytest.raises(FormatError, match=says):
        bounded(lambda: read_safetensors(path), input_bytes=path.stat().st_size)


# --- a model's files together --------------------------------------------------------------

PARTS = split_gguf("model", [1000, 1200])
SHARD = safetensors_bytes({"w1": (4,)})
index_json = st.one_of(
    json_value.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(["w1", "w2", "", "../w"]),
        st.one_of(
            json_scalar, st.sampled_from(["s1.safetensors", "../s1.safetensors", "/etc/passwd"])
        ),
        max_size=3,
    ).map(lambda m: json.dumps({"weight_map": m}).encode()),
    st.binary(max_size=40),
    st.just(b"[" * 5000 + b"]" * 5000),
    st.just(b'{"weight_map": {"w1": "s1.safetensors"}}'),
)


@fuzz
@given(
    index=index_json,
    parts=st.lists(st.sampled_from(sorted(PARTS)), max_size=2, unique=True),
    part_bytes=st.one_of(st.none(), mutated_gguf()),
    complete=st.booleans(),
)
def test_inspect_files_raises_only_format_errors(
    tmp_path: Path, index: bytes, parts: list[str], part_bytes: bytes | None, complete: bool
) -> None:
    files = []
    for name in parts:
        path = tmp_path / name
        path.write_bytes(part_bytes if part_bytes is not None else PARTS[name])
        files.append((name, path))
    (tmp_path / "s1.safetensors").write_bytes(SHARD)
    (tmp_path / "model.safetensors.index.json").write_bytes(index)
    files += [
        ("s1.safetensors", tmp_path / "s1.safetensors"),
        ("model.safetensors.index.json", tmp_path / "model.safetensors.index.json"),
    ]
    size = sum(p.stat().st_size for _, p in files)
    try:
        summaries = bounded(lambda: inspect_files(files, complete=complete), input_bytes=size)
    except FormatError as e:
        assert str(e).startswith("not a valid ")
    else:
        assert set(summaries) <= {name for name, _ in files}
