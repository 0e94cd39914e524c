"""The Open Inference Protocol (KServe V2, Triton's HTTP/REST) codec: pure functions, no FastAPI.

What a V2 server speaks over HTTP, as far as the DFI service serves it (routes in service/routers/v2.py):

- JSON tensors: `{"name", "shape", "datatype", "data"}` with `data` flat in row-major order or nested as the shape.
- The binary tensor data extension, both ways: the request's first `Inference-Header-Content-Length` bytes are the
  JSON header; each input with `parameters.binary_data_size` takes that many bytes, in input order, from the rest
  (little-endian, row-major). Outputs go binary when the request asks (`parameters.binary_data_output`, or
  `parameters.binary_data` per requested output), behind a JSON header whose length the response names in the
  same header, as application/octet-stream.
- gzip and deflate request bodies (`Content-Encoding`), inflated up to the body limit; gzip or deflate responses
  when `Accept-Encoding` asks for them (inference responses only: tritonclient reads error and metadata bodies raw).
- Errors as `{"error": "<message>"}`; every message names the input, what was expected and the limit.

Nothing here allocates by a size the client merely claims: shapes are checked against the model and the batch
limits before any tensor is built, and binary sizes against the bytes actually sent.
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# V2 tensor datatypes (the protocol's names) and their numpy dtypes. BYTES (length-prefixed strings) is not served.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
# ONNX Runtime's element types (NodeArg.type) → V2 datatypes.
ONNX_DATATYPES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}
# JSON `data` element kinds (numpy's inference from the parsed list) each datatype accepts.
_JSON_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
HEADER = "Inference-Header-Content-Length"
SHOWN = 80  # characters of a client-given name quoted back in a message


class ProtocolError(Exception):
    """A request the protocol refuses: `status` and a message for `{"error": message}`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a V2 model: shape with -1 for the batch axis; `limit` = (setting, most rows)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    limit: tuple[str, int] | None = None

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class Signature:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]  # in the signature's input order
    outputs: list[tuple[str, bool]]  # (output name, as binary) in the order the response lists them
    batch: int
    parameters: dict[str, Any] = field(default_factory=dict)


def shown(text: object) -> str:
    text = str(text)
    return repr(text) if len(text) <= SHOWN else repr(text[:SHOWN]) + f"… ({len(text)} characters)"


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def datatype_of(dtype: np.dtype) -> str:
    name = _NAMES.get(np.dtype(dtype).newbyteorder("="))
    if name is None:
        raise ProtocolError(400, f"dtype {dtype} has no V2 datatype")
    return name


# --- Bodies: content coding ------------------------------------------------------------------------------------


def inflate(raw: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """The body without its Content-Encoding (identity, gzip or deflate), refused once it inflates past
    `max_bytes` (max_body_bytes: a small compressed body must not become a large one)."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return raw
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        wbits = zlib.MAX_WBITS  # HTTP's "deflate" is the zlib format (RFC 9110 8.4.1.2); raw deflate also accepted
        if raw[:1] and (raw[0] & 0x0F != 8 or int.from_bytes(raw[:2], "big") % 31):
            wbits = -zlib.MAX_WBITS
    else:
        raise ProtocolError(415, f"unsupported Content-Encoding {shown(encoding)}; send gzip, deflate or identity")
    out, rest = bytearray(), raw
    try:
        while True:  # gzip allows several members one after the other
            inflater = zlib.decompressobj(wbits)
            out += inflater.decompress(rest, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise ProtocolError(413, f"the {coding} request body inflates to more than max_body_bytes "
                                         f"({max_bytes} bytes)")  # fmt: skip
            if not inflater.eof:
                raise ProtocolError(400, f"the {coding} request body is truncated (the compressed stream does not end)")
            rest = inflater.unused_data
            if not rest or wbits != 16 + zlib.MAX_WBITS:
                break
    except zlib.error as error:
        raise ProtocolError(400, f"the request body is not valid {coding} data ({error})") from None
    if rest:
        raise ProtocolError(400, f"{len(rest)} bytes after the end of the {coding} stream")
    return bytes(out)


def response_coding(accept_encoding: str | None) -> str | None:
    """gzip or deflate when Accept-Encoding asks for one (q > 0), the first named wins; else None (identity)."""
    best: tuple[float, int, str] | None = None
    for index, part in enumerate((accept_encoding or "").split(",")):
        coding, *params = (p.strip() for p in part.split(";"))
        coding = coding.lower()
        if coding not in ("gzip", "deflate"):
            continue
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -index) > (best[0], -best[1])):
            best = (q, index, coding)
    return best[2] if best else None


def compress(body: bytes, coding: str) -> bytes:
    """Level 1: float tensors barely compress at any level; speed is what is worth having."""
    return gzip.compress(body, compresslevel=1, mtime=0) if coding == "gzip" else zlib.compress(body, 1)


# --- Requests --------------------------------------------------------------------------------------------------


def _split(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return raw, b""
    text = header_length.strip()
    if not text.isdigit():
        raise ProtocolError(400, f"{HEADER} must be a byte count, got {shown(header_length)}")
    length = int(text)
    if length > len(raw):
        raise ProtocolError(400, f"{HEADER} is {length}, but the body has only {len(raw)} bytes")
    if length == 0:
        raise ProtocolError(400, f"{HEADER} is 0: the body must start with the JSON inference header")
    return raw[:length], raw[length:]


def _load_json(header: bytes) -> dict[str, Any]:
    if not header.strip():
        raise ProtocolError(400, 'empty request body: send the JSON inference request ({"inputs": [...]})')
    try:
        value = json.loads(header)
    except json.JSONDecodeError as error:
        raise ProtocolError(400, f"invalid JSON in the inference request: {error.msg} at position {error.pos}"
                            ) from None  # fmt: skip
    except UnicodeDecodeError as error:
        raise ProtocolError(400, f"the inference request is not UTF-8 ({error.reason} at position {error.start})"
                            ) from None  # fmt: skip
    except RecursionError:
        raise ProtocolError(400, "invalid JSON in the inference request: nested too deeply") from None
    except ValueError as error:  # e.g. an integer longer than Python's int_max_str_digits
        raise ProtocolError(400, f"invalid JSON in the inference request: {error}") from None
    if not isinstance(value, dict):
        raise ProtocolError(400, f'the inference request must be a JSON object with "inputs", not {_kind(value)}')
    return value


def _object(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(400, f"{where} must be an object, not {_kind(value)}")
    return value


def _flag(parameters: dict[str, Any], key: str, where: str, default: bool = False) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError(400, f"{where}.{key} must be true or false, not {_kind(value)}")
    return value


def _has_bool(data: list) -> bool:
    return any(item is True or item is False or (type(item) is list and _has_bool(item)) for item in data)


def _shape(value: object, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(d) is int and d >= 0 for d in value):
        raise ProtocolError(400, f"{where}.shape must be an array of non-negative integers, got {shown(value)}")
    return tuple(value)


def _check_shape(spec: TensorSpec, shape: tuple[int, ...], model: str) -> int:
    """The batch (rows) of a shape that fits the spec; 400 for another rank or fixed dim, 413 above the limit."""
    expected = list(spec.shape)
    if len(shape) != len(expected) or any(want not in (-1, got) for want, got in zip(expected, shape, strict=True)):
        raise ProtocolError(400, f"input {spec.name!r} of model {model}: shape {list(shape)} does not match "
                                 f"{expected} (-1: any batch size)")  # fmt: skip
    batch = shape[0] if shape else 1
    if shape and expected[0] == -1:
        if batch == 0:
            raise ProtocolError(400, f"input {spec.name!r} of model {model}: an empty batch (shape {list(shape)})")
        if spec.limit is not None and batch > spec.limit[1]:
            setting, most = spec.limit
            raise ProtocolError(413, f"input {spec.name!r} of model {model}: batch {batch} > {setting} ({most}); "
                                     "split the request")  # fmt: skip
    return batch


def _json_tensor(data: object, spec: TensorSpec, shape: tuple[int, ...], count: int, model: str) -> np.ndarray:
    where = f"input {spec.name!r} of model {model}"
    dtype = DATATYPES[spec.datatype]
    if not isinstance(data, list):
        raise ProtocolError(400, f"{where}: data must be an array of numbers (flat or nested), not {_kind(data)}")
    try:
        parsed = np.array(data)
    except (ValueError, TypeError, OverflowError) as error:  # ragged, or nested deeper than numpy's 64 dims
        why = str(error).split(". ")[-1][:120]
        raise ProtocolError(400, f"{where}: data must be numbers, flat in row-major order or nested as the shape; "
                                 f"got an irregular nesting ({why})") from None  # fmt: skip
    if parsed.size != count:
        raise ProtocolError(400, f"{where}: shape {list(shape)} needs {count} values, data has {parsed.size}")
    if parsed.dtype.kind not in _JSON_KINDS.get(dtype.kind, "") or (dtype.kind != "b" and _has_bool(data)):
        raise ProtocolError(400, f"{where}: data must hold only {spec.datatype} numbers (found "
                                 f"{'booleans' if _has_bool(data) else 'strings, null or other values'})")  # fmt: skip
    with np.errstate(over="ignore", invalid="ignore"):  # out of range → inf, refused below with a count
        return parsed.astype(dtype).reshape(shape)


def _binary_tensor(blob: bytes, spec: TensorSpec, shape: tuple[int, ...], count: int) -> np.ndarray:
    dtype = DATATYPES[spec.datatype]
    return np.frombuffer(blob, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


def parse_infer_request(raw: bytes, header_length: str | None, signature: Signature) -> InferRequest:
    """The inputs (numpy, validated against `signature`) and the outputs asked for, or ProtocolError."""
    header, binary = _split(raw, header_length)
    body = _load_json(header)
    model = signature.name
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(400, f"id must be a string, not {_kind(request_id)}")
    parameters = _object(body.get("parameters"), "parameters")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        got = "nothing" if inputs is None else _kind(inputs) if not isinstance(inputs, list) else "an empty array"
        raise ProtocolError(400, f"inputs must be a non-empty array of tensors, got {got}; model {model} takes "
                                 f"{[spec.public() for spec in signature.inputs]}")  # fmt: skip
    specs = {spec.name: spec for spec in signature.inputs}
    arrays: dict[str, np.ndarray] = {}
    batches: dict[str, int] = {}
    offset = 0
    for index, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise ProtocolError(400, f"inputs[{index}] must be an object, not {_kind(item)}")
        name = item.get("name")
        if not isinstance(name, str):
            raise ProtocolError(400, f"inputs[{index}].name must be a string, not {_kind(name)}")
        if name not in specs:
            raise ProtocolError(400, f"unknown input {shown(name)} for model {model}; its inputs: {list(specs)}")
        if name in arrays:
            raise ProtocolError(400, f"input {name!r} is given twice")
        spec = specs[name]
        where = f"input {name!r} of model {model}"
        if spec.datatype not in DATATYPES:
            raise ProtocolError(400, f"{where}: the graph takes {spec.datatype}, which V2 does not serve here")
        datatype = item.get("datatype")
        if datatype != spec.datatype:
            known = "" if datatype in DATATYPES else " (not a datatype this server decodes)"
            raise ProtocolError(400, f"{where}: datatype {shown(datatype)}{known}; the model takes "
                                     f"{spec.datatype} (e.g. array.astype(np.{DATATYPES[spec.datatype]}))")  # fmt: skip
        shape = _shape(item.get("shape"), f"inputs[{index}]")
        batches[name] = _check_shape(spec, shape, model)
        count = math.prod(shape)
        input_parameters = _object(item.get("parameters"), f"inputs[{index}].parameters")
        if "shared_memory_region" in input_parameters:
            raise ProtocolError(400, f"{where}: shared memory is not supported; send the data in the request")
        size = input_parameters.get("binary_data_size")
        if size is None:
            if "data" not in item:
                raise ProtocolError(400, f"{where}: neither data nor parameters.binary_data_size given")
            array = _json_tensor(item["data"], spec, shape, count, model)
        else:
            if type(size) is not int or size < 0:
                raise ProtocolError(400, f"{where}: binary_data_size must be a non-negative integer, not "
                                         f"{shown(size)}")  # fmt: skip
            if "data" in item:
                raise ProtocolError(400, f"{where}: both data and binary_data_size given; send one")
            if header_length is None:
                raise ProtocolError(400, f"{where}: binary_data_size given, but no {HEADER} header says where the "
                                         "JSON ends and the binary data begins")  # fmt: skip
            needed = count * DATATYPES[spec.datatype].itemsize
            if size != needed:
                raise ProtocolError(400, f"{where}: shape {list(shape)} {spec.datatype} needs {needed} bytes, "
                                         f"binary_data_size is {size}")  # fmt: skip
            if offset + size > len(binary):
                raise ProtocolError(400, f"{where}: binary_data_size {size} at byte {offset} of the binary data, but "
                                         f"the body has only {len(binary)} bytes after the {len(header)}-byte JSON "
                                         "header")  # fmt: skip
            array = _binary_tensor(binary[offset : offset + size], spec, shape, count)
            offset += size
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int(array.size - np.count_nonzero(np.isfinite(array)))
            raise ProtocolError(400, f"{where}: {bad} NaN/inf value(s) (or beyond {spec.datatype}'s range); the "
                                     "model takes finite values")  # fmt: skip
        arrays[name] = array
    if offset != len(binary):
        raise ProtocolError(400, f"the body has {len(binary)} bytes after the {len(header)}-byte JSON header, but the "
                                 f"inputs' binary_data_size add up to {offset}")  # fmt: skip
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise ProtocolError(400, f"model {model} needs the inputs {list(specs)}; missing {missing}")
    if len(set(batches.values())) > 1:
        raise ProtocolError(400, f"model {model}: the inputs' batch sizes differ {batches}; give each the same rows")
    outputs = _requested_outputs(body.get("outputs"), signature, _flag(parameters, "binary_data_output", "parameters"))
    return InferRequest(request_id, {name: arrays[name] for name in specs}, outputs, next(iter(batches.values())),
                        parameters)  # fmt: skip


def _requested_outputs(value: object, signature: Signature, binary_default: bool) -> list[tuple[str, bool]]:
    known = [spec.name for spec in signature.outputs]
    if value is None:
        return [(name, binary_default) for name in known]
    if not isinstance(value, list):
        raise ProtocolError(400, f'outputs must be an array of {{"name": ...}} objects, not {_kind(value)}')
    chosen: list[tuple[str, bool]] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError(400, f"outputs[{index}] must be an object with a string name")
        name = item["name"]
        if name not in known:
            raise ProtocolError(400, f"unknown output {shown(name)} for model {signature.name}; its outputs: {known}")
        if any(name == seen for seen, _ in chosen):
            raise ProtocolError(400, f"output {name!r} is asked for twice")
        parameters = _object(item.get("parameters"), f"outputs[{index}].parameters")
        if parameters.get("classification"):
            raise ProtocolError(400, f"output {name!r}: the classification extension is not supported; ask for the "
                                     "tensor (logits) itself")  # fmt: skip
        if "shared_memory_region" in parameters:
            raise ProtocolError(400, f"output {name!r}: shared memory is not supported")
        chosen.append((name, _flag(parameters, "binary_data", f"outputs[{index}].parameters", binary_default)))
    return chosen


# --- Responses -------------------------------------------------------------------------------------------------


def encode_infer_response(model: str, version: str, request_id: str | None,
                          outputs: list[tuple[str, np.ndarray, bool]]) -> tuple[bytes, int | None]:  # fmt: skip
    """(body, JSON header length when some output is binary, else None)."""
    body: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        body["id"] = request_id
    entries, blobs = [], []
    for name, array, binary in outputs:
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype), "shape": list(array.shape)}
        if binary:
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.ravel().tolist()
        entries.append(entry)
    body["outputs"] = entries
    header = json.dumps(body, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def error_json(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def from_rest_error(body: bytes) -> bytes | None:
    """The service's REST error (`{"error": {"message", "limit"?, ...}}`, from middleware and the global handlers:
    auth, rate limits, body limits, unknown paths) in the V2 shape, the limit in the message; None if `body` is
    not one."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    error = value.get("error") if isinstance(value, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    message = error["message"]
    if error.get("limit") is not None:
        message = f"{message} (limit: {json.dumps(error['limit'])})"
    return error_json(message)


def model_metadata(signature: Signature, versions: list[str], platform: str) -> dict[str, Any]:
    return {"name": signature.name, "versions": versions, "platform": platform,
            "inputs": [spec.public() for spec in signature.inputs],
            "outputs": [spec.public() for spec in signature.outputs]}  # fmt: skip
