from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FitRequest(_message.Message):
    __slots__ = ("label_run", "task", "config", "make_current")
    LABEL_RUN_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    MAKE_CURRENT_FIELD_NUMBER: _ClassVar[int]
    label_run: str
    task: str
    config: _struct_pb2.Struct
    make_current: bool
    def __init__(self, label_run: _Optional[str] = ..., task: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., make_current: _Optional[bool] = ...) -> None: ...

class FeaturizeRequest(_message.Message):
    __slots__ = ("instances", "transform")
    class Instance(_message.Message):
        __slots__ = ("text", "metadata")
        TEXT_FIELD_NUMBER: _ClassVar[int]
        METADATA_FIELD_NUMBER: _ClassVar[int]
        text: str
        metadata: _struct_pb2.Struct
        def __init__(self, text: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[FeaturizeRequest.Instance]
    transform: str
    def __init__(self, instances: _Optional[_Iterable[_Union[FeaturizeRequest.Instance, _Mapping]]] = ..., transform: _Optional[str] = ...) -> None: ...

class FeaturizeResponse(_message.Message):
    __slots__ = ("transform", "dim", "vectors")
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    transform: str
    dim: int
    vectors: _containers.RepeatedCompositeFieldContainer[SparseVector]
    def __init__(self, transform: _Optional[str] = ..., dim: _Optional[int] = ..., vectors: _Optional[_Iterable[_Union[SparseVector, _Mapping]]] = ...) -> None: ...

class SparseVector(_message.Message):
    __slots__ = ("indices", "values", "truncated")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    truncated: bool
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., values: _Optional[_Iterable[float]] = ..., truncated: _Optional[bool] = ...) -> None: ...

class GetTransformRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class TransformInfo(_message.Message):
    __slots__ = ("version", "dim", "current", "label_run", "description")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    LABEL_RUN_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    version: str
    dim: int
    current: bool
    label_run: str
    description: _struct_pb2.Struct
    def __init__(self, version: _Optional[str] = ..., dim: _Optional[int] = ..., current: _Optional[bool] = ..., label_run: _Optional[str] = ..., description: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
