"""One loaded model version: its SavedModel, its signatures, and how to call them.

Any SavedModel loads, TF2 (``tf.saved_model.save``, Keras export) or TF1
(``SavedModelBuilder``): signatures are called through the concrete functions
``tf.saved_model.load`` gives, while their definitions (input and output
dtypes and shapes, method names) come from the ``SignatureDef`` protos in
``saved_model.pb``, exactly what TF Serving reports as metadata.

Per signature, everything a call needs is computed once at load: the input
specs, the dtype table for the REST API, whether calls can be batched, and the
flat order of the function's inputs (:mod:`~mlcycle.modelserver.calls`). A
call is the concrete function applied to tensors made from numpy arrays,
nothing more.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from mlcycle.common.errors import InvalidInput, MlcycleError, NotFound
from mlcycle.modelserver.calls import FlatCall
from mlcycle.modelserver.errors import FailedPrecondition, ModelError
from mlcycle.modelserver.tensors import dtype_name

log = logging.getLogger(__name__)

SERVING_DEFAULT = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
# Signature keys that are SavedModel plumbing, not something to call.
INIT_OP_SIGNATURE = "__saved_model_init_op"


@dataclass(frozen=True)
class TensorSpec:
    """An input or output of a signature: dtype and shape (None: unknown rank or size)."""

    alias: str
    dtype: int
    shape: tuple[int | None, ...] | None

    @classmethod
    def from_info(cls, alias: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
        """The spec a SignatureDef's TensorInfo declares."""
        if info.tensor_shape.unknown_rank:
            return cls(alias, info.dtype, None)
        dims = tuple(d.size if d.size >= 0 else None for d in info.tensor_shape.dim)
        return cls(alias, info.dtype, dims)

    def describe(self) -> str:
        """``[-1,3]`` (``-1`` for any size), as TF Serving prints shapes."""
        if self.shape is None:
            return "[?]"
        return "[" + ",".join("-1" if d is None else str(d) for d in self.shape) + "]"


class Signature:
    """One callable signature of a loaded model version."""

    def __init__(self, key: str, definition: meta_graph_pb2.SignatureDef, function: Any) -> None:
        self.key = key
        self.definition = definition
        self.method_name = definition.method_name
        self.inputs = {a: TensorSpec.from_info(a, i) for a, i in sorted(definition.inputs.items())}
        self.outputs = {
            a: TensorSpec.from_info(a, i) for a, i in sorted(definition.outputs.items())
        }
        self.input_dtypes = {alias: spec.dtype for alias, spec in self.inputs.items()}
        self._input_names = frozenset(self.inputs)
        self._function = function
        self._flat_call = FlatCall.of(function, self.input_dtypes)
        # Batching merges rows along dimension 0, so every tensor needs a free one.
        self.batchable = bool(self.inputs) and all(
            spec.shape is not None and len(spec.shape) >= 1 and spec.shape[0] is None
            for spec in (*self.inputs.values(), *self.outputs.values())
        )

    @property
    def calls_flat(self) -> bool:
        """True when calls take the flat path (:class:`~mlcycle.modelserver.calls.FlatCall`)."""
        return self._flat_call is not None

    # -- validation, with TF Serving's messages where it has them ------------------------------

    def check_names(self, names: Iterable[str]) -> None:
        """INVALID_ARGUMENT unless ``names`` are exactly the signature's inputs."""
        given = set(names)
        if given == self._input_names:
            return
        if len(given) != len(self._input_names):
            extra = ",".join(sorted(given - self._input_names))
            missing = ",".join(sorted(self._input_names - given))
            raise InvalidInput(
                f"input size does not match signature: {len(given)}!={len(self._input_names)} "
                f"len({{{','.join(sorted(given))}}}) != len({{{','.join(sorted(self.inputs))}}}). "
                f"Sent extra: {{{extra}}}. Missing but required: {{{missing}}}."
            )
        unknown = sorted(given - self._input_names)[0]
        raise InvalidInput(
            f"input tensor alias not found in signature: {unknown}. Inputs expected to be in "
            f"the set {{{','.join(sorted(self.inputs))}}}."
        )

    def check_dtype(self, alias: str, dtype: int) -> None:
        """INVALID_ARGUMENT naming the input when ``dtype`` is not the one it takes."""
        expected = self.inputs[alias].dtype
        if dtype != expected:
            raise InvalidInput(
                f"input {alias} has dtype {dtype_name(dtype)} but signature {self.key!r} "
                f"expects {dtype_name(expected)}"
            )

    def check_shapes(self, arrays: Mapping[str, np.ndarray]) -> None:
        """INVALID_ARGUMENT naming the input whose rank or fixed sizes do not fit."""
        for alias, array in arrays.items():
            spec = self.inputs[alias]
            if spec.shape is None:
                continue
            if array.ndim != len(spec.shape):
                raise InvalidInput(
                    f"input {alias} has shape {list(array.shape)} (rank {array.ndim}) but "
                    f"signature {self.key!r} expects shape {spec.describe()} "
                    f"(rank {len(spec.shape)})"
                )
            for axis, (size, want) in enumerate(zip(array.shape, spec.shape, strict=True)):
                if want is not None and size != want:
                    raise InvalidInput(
                        f"input {alias} has shape {list(array.shape)} but signature "
                        f"{self.key!r} expects {spec.describe()}: dimension {axis} must be {want}"
                    )

    def check_outputs(self, output_filter: Sequence[str]) -> None:
        """INVALID_ARGUMENT for an unknown or repeated name in a Predict output_filter."""
        seen: set[str] = set()
        for alias in output_filter:
            if alias not in self.outputs:
                raise InvalidInput(
                    f"output tensor alias not found in signature: {alias} Outputs expected to "
                    f"be in the set {{{','.join(self.outputs)}}}."
                )
            if alias in seen:
                raise InvalidInput(f"duplicate output tensor alias: {alias}")
            seen.add(alias)

    # -- calling --------------------------------------------------------------------------------

    def run(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Every output of the signature for validated ``arrays``."""
        import tensorflow as tf

        try:
            outputs = self._flat_call(arrays) if self._flat_call is not None else None
            if outputs is None:
                outputs = self._function(**arrays)
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as exc:
            raise ModelError(f"the model rejected the inputs: {exc.message}") from None
        except (TypeError, ValueError) as exc:  # inputs the function's own specs refuse
            raise ModelError(f"the model rejected the inputs: {exc}") from None
        except tf.errors.OpError as exc:
            raise MlcycleError(f"the model failed: {exc.message}") from exc
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}


class Servable:
    """A model version loaded from its SavedModel folder, ready to answer."""

    def __init__(
        self,
        name: str,
        version: int,
        path: Path,
        meta_graph: meta_graph_pb2.MetaGraphDef,
        loaded: Any,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = dict(meta_graph.signature_def)
        self._loaded = loaded  # holds the variables and functions alive
        functions = loaded.signatures
        self.signatures = {
            key: Signature(key, definition, functions[key])
            for key, definition in sorted(self.signature_defs.items())
            if key in functions and key != INIT_OP_SIGNATURE
        }

    @classmethod
    def load(
        cls, name: str, version: int, path: Path, tags: Sequence[str] = ("serve",)
    ) -> Servable:
        """Load the SavedModel in ``path``; errors say what is wrong with it."""
        import tensorflow as tf

        meta_graph = read_meta_graph(path, tags)
        started = time.perf_counter()
        try:
            loaded = tf.saved_model.load(str(path), tags=list(tags))
        except (tf.errors.OpError, ValueError, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise InvalidInput(f"cannot load the SavedModel in {path}: {message}") from None
        servable = cls(name, version, path, meta_graph, loaded)
        log.info(
            "loaded %s version %d in %.2f s",
            name,
            version,
            time.perf_counter() - started,
            extra={"signatures": sorted(servable.signatures), "path": str(path)},
        )
        return servable

    def signature(self, key: str) -> Signature:
        """The signature ``key`` (``serving_default`` when empty) for Predict."""
        key = key or SERVING_DEFAULT
        found = self.signatures.get(key)
        if found is None:
            raise FailedPrecondition(f'Serving signature key "{key}" not found.')
        return found


def read_meta_graph(path: Path, tags: Sequence[str]) -> meta_graph_pb2.MetaGraphDef:
    """The MetaGraphDef tagged ``tags`` in the SavedModel at ``path``."""
    saved_model = saved_model_pb2.SavedModel()
    binary, text = path / "saved_model.pb", path / "saved_model.pbtxt"
    try:
        if binary.is_file():
            saved_model.ParseFromString(binary.read_bytes())
        elif text.is_file():
            text_format.Parse(text.read_text(encoding="utf-8"), saved_model)
        else:
            raise NotFound(
                f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}"
            )
    except (OSError, text_format.ParseError, DecodeError) as exc:
        raise InvalidInput(f"cannot read the SavedModel in {path}: {exc}") from None
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    available = [sorted(m.meta_info_def.tags) for m in saved_model.meta_graphs]
    raise NotFound(
        f"the SavedModel in {path} has no MetaGraphDef tagged {sorted(wanted)} "
        f"(it has {available}); see --saved_model_tags"
    )
