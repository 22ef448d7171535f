"""Calling a signature's function with flat, pre-ordered tensors.

``function(**arrays)`` binds TensorFlow's structured signature on every call:
it canonicalizes the keyword arguments, binds them to the function type and
casts each value to its ``TensorSpec``, which costs a fifth of a one-row
call. That path and TensorFlow's flat-signature path both end in
``ConcreteFunction._call_flat(tensors, captured_inputs)`` with the tensors in
``_arg_keywords`` order. :class:`FlatCall` works that order out once, at
load, and converts each array as the structured path's cast does
(``tf.constant`` with the spec's dtype), so a call is the conversion and the
function, nothing more.

It is used only where it gives exactly the structured call's answer: at load,
the function's inputs must be plain dense ``TensorSpec`` s named like the
SignatureDef's inputs, with its dtypes, in the order of the graph's
placeholders; per call, the arrays must be exactly those inputs, numpy arrays
of the spec's dtype, of shapes the specs accept. Anything else (composite
inputs, a TensorFlow whose internals differ, an array the cast would convert)
is left to the structured call, which also words the errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlcycle.modelserver.tensors import numpy_dtype

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Input:
    """One flat input: its alias, dtypes, and what its spec asks of a shape."""

    alias: str
    dtype: Any  # tf.DType
    numpy_dtype: np.dtype[Any]
    rank: int | None  # None: any rank
    fixed: tuple[tuple[int, int], ...]  # (axis, size) of the dimensions with a fixed size

    def accepts(self, array: Any) -> bool:
        """True for a numpy array the structured call would take as it is."""
        if not isinstance(array, np.ndarray) or array.dtype != self.numpy_dtype:
            return False
        if self.rank is None:
            return True
        shape = array.shape
        return len(shape) == self.rank and all(shape[axis] == size for axis, size in self.fixed)


class FlatCall:
    """A signature function called with its tensors in flat order (see the module doc)."""

    def __init__(self, function: Any, inputs: tuple[_Input, ...]) -> None:
        self._function = function
        self._inputs = inputs

    @classmethod
    def of(cls, function: Any, input_dtypes: Mapping[str, int]) -> FlatCall | None:
        """The flat call of ``function``, or None when only the structured call is safe."""
        try:
            inputs = _flat_inputs(function, input_dtypes)
        except Exception:  # any surprise in TensorFlow's internals: keep the public path
            log.debug("no flat call for %r", function, exc_info=True)
            return None
        return cls(function, inputs) if inputs is not None else None

    def __call__(self, arrays: Mapping[str, np.ndarray]) -> Any | None:
        """The function's outputs, or None when ``arrays`` need the structured call."""
        import tensorflow as tf

        if len(arrays) != len(self._inputs):
            return None
        tensors = []
        for spec in self._inputs:
            array = arrays.get(spec.alias)
            if not spec.accepts(array):
                return None
            try:
                tensors.append(tf.constant(array, dtype=spec.dtype))
            except (TypeError, ValueError):  # e.g. a string array holding numbers
                return None
        function = self._function
        return function._call_flat(tensors, function.captured_inputs)


def _flat_inputs(function: Any, input_dtypes: Mapping[str, int]) -> tuple[_Input, ...] | None:
    import tensorflow as tf

    if not callable(getattr(function, "_call_flat", None)):
        return None
    keywords = tuple(function._arg_keywords or ())
    if sorted(keywords) != sorted(input_dtypes) or len(set(keywords)) != len(keywords):
        return None
    parameters = [p.name for p in function.function_type.parameters.values()]
    args, kwargs = function.structured_input_signature
    placeholders = function.inputs
    if parameters != list(keywords) or args or sorted(kwargs) != sorted(keywords):
        return None
    if len(placeholders) < len(keywords):
        return None
    inputs = []
    for alias, placeholder in zip(keywords, placeholders, strict=False):
        spec = kwargs[alias]
        if type(spec) is not tf.TensorSpec:  # composite specs flatten to several tensors
            return None
        dtype = spec.dtype
        if dtype.as_datatype_enum != input_dtypes[alias] or placeholder.dtype != dtype:
            return None
        as_numpy = numpy_dtype(dtype.as_datatype_enum)
        if as_numpy is None:
            return None
        rank = spec.shape.rank
        dims = spec.shape.as_list() if rank is not None else []
        fixed = tuple((axis, size) for axis, size in enumerate(dims) if size is not None)
        inputs.append(_Input(alias, dtype, as_numpy, rank, fixed))
    return tuple(inputs)
