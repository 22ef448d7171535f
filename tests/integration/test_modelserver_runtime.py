"""How the model server runs: flat signature calls, TensorFlow's pools, gRPC workers, the heap.

A flat call (mlcycle.modelserver.calls) must answer exactly what the public,
structured call of the same SavedModel answers, for TF2 and TF1 exports and
every dtype the test models take, and must leave to the structured call
everything it does not take itself.
"""

from __future__ import annotations

import gc
import logging
import subprocess
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from mlcycle.common.settings import load_settings
from mlcycle.modelserver import ModelServer, ModelServerOptions, threads
from mlcycle.modelserver.calls import FlatCall
from mlcycle.modelserver.config import model_settings, single_model_config
from mlcycle.modelserver.errors import ModelError
from mlcycle.modelserver.heap import HeapFreezer
from mlcycle.modelserver.manager import ModelManager
from mlcycle.modelserver.servable import INIT_OP_SIGNATURE, Servable
from tests.integration.modelserver_models import (
    copy_version,
    export_generic,
    export_mlcycle_model,
    export_sparse_scorer,
)

pytestmark = pytest.mark.integration

RNG = np.random.default_rng(7)


@dataclass(frozen=True)
class Loaded:
    """A version as the server loads it, and the same SavedModel loaded on its own."""

    servable: Servable
    public: Any  # tf.saved_model.load's object: its signatures are called the public way

    def structured(self, key: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.public.signatures[key](**arrays)
        return {alias: tensor.numpy() for alias, tensor in outputs.items()}


def _load(path: Path) -> Loaded:
    return Loaded(Servable.load("m", 1, path), tf.saved_model.load(str(path)))


@pytest.fixture(scope="module")
def scorer(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    return _load(export_sparse_scorer(tmp_path_factory.mktemp("scorer") / "1", bias=0.5))


@pytest.fixture(scope="module")
def generic(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    return _load(export_generic(tmp_path_factory.mktemp("generic") / "1"))


@pytest.fixture(scope="module")
def trainers(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    return _load(export_mlcycle_model(tmp_path_factory.mktemp("trainers") / "1"))


def sparse(rows: int, width: int = 6) -> dict[str, np.ndarray]:
    return {
        "indices": RNG.integers(0, 1000, (rows, width)).astype(np.int64),
        "values": RNG.random((rows, width)).astype(np.float32),
    }


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for alias, array in want.items():
        assert got[alias].dtype == array.dtype, alias
        assert got[alias].shape == array.shape, alias
        np.testing.assert_array_equal(got[alias], array, err_msg=alias)


# -- flat calls -----------------------------------------------------------------------------------


def test_every_signature_of_tf2_tf1_and_the_trainers_exports_calls_flat(
    scorer: Loaded, generic: Loaded, trainers: Loaded
) -> None:
    for loaded in (scorer, generic, trainers):
        keys = set(loaded.servable.signature_defs) - {INIT_OP_SIGNATURE}
        assert set(loaded.servable.signatures) == keys
        flat = {key: s.calls_flat for key, s in loaded.servable.signatures.items()}
        assert all(flat.values()), flat


@pytest.mark.parametrize("rows", [1, 3, 64])
def test_flat_calls_of_a_tf2_export_answer_as_the_structured_call(
    scorer: Loaded, trainers: Loaded, rows: int
) -> None:
    for loaded in (scorer, trainers):
        arrays = sparse(rows)
        got = loaded.servable.signature("").run(arrays)
        assert_same(got, loaded.structured("serving_default", arrays))


GENERIC_CALLS: list[tuple[str, dict[str, np.ndarray]]] = [
    ("serving_default", {"x": np.array([1.0, -2.5, 7.0], np.float32)}),
    (
        "multi",
        {
            "x": np.array([1.0, 2.0], np.float32),
            "k": np.array([[1, 2, 3], [4, 5, 6]], np.int64),
            "s": np.array([b"ab", "caf\u00e9".encode()], dtype=object),
        },
    ),
    ("scale", {"x": np.array([1.0, 2.0], np.float32), "factor": np.array(3.0, np.float32)}),
    ("total", {"x": np.array([1.0, 2.0, 4.0], np.float32)}),
    ("matrix", {"m": np.arange(6, dtype=np.float32).reshape(3, 1, 2)}),
    (
        "sensors",
        {
            "tag": np.array([b"a"], dtype=object),
            "signal": np.arange(5, dtype=np.int64).reshape(1, 5),
            "sensor": np.ones((1, 2, 2), np.int64),
        },
    ),
    ("upper", {"text": np.array([], dtype=object)}),  # no rows at all
]


@pytest.mark.parametrize(("key", "arrays"), GENERIC_CALLS, ids=[c[0] for c in GENERIC_CALLS])
def test_flat_calls_of_a_tf1_export_answer_as_the_structured_call(
    generic: Loaded, key: str, arrays: dict[str, np.ndarray]
) -> None:
    signature = generic.servable.signature(key)
    assert signature.calls_flat
    assert_same(signature.run(arrays), generic.structured(key, arrays))


def test_arrays_the_flat_call_does_not_take_go_through_the_structured_call(
    scorer: Loaded, generic: Loaded
) -> None:
    signature = scorer.servable.signature("")
    flat = FlatCall.of(scorer.public.signatures["serving_default"], signature.input_dtypes)
    assert flat is not None
    arrays = sparse(2)
    narrow = {**arrays, "indices": arrays["indices"].astype(np.int32)}  # the cast widens it
    assert flat(narrow) is None
    assert_same(signature.run(narrow), scorer.structured("serving_default", arrays))
    listed = {**arrays, "values": arrays["values"].tolist()}  # not an array at all
    assert flat(listed) is None
    assert_same(signature.run(listed), scorer.structured("serving_default", arrays))
    # What the structured call refuses is refused with its words.
    for bad in (
        {"indices": arrays["indices"][0], "values": arrays["values"]},  # rank 1, not 2
        {"indices": arrays["indices"]},  # an input missing
        {**arrays, "extra": arrays["values"]},  # one too many
    ):
        assert flat(bad) is None
        with pytest.raises(ModelError, match="the model rejected the inputs"):
            signature.run(bad)
    multi = generic.servable.signature("multi")
    wrong_width = {
        "x": np.array([1.0], np.float32),
        "k": np.ones((1, 2), np.int64),  # the signature fixes dimension 1 at 3
        "s": np.array([b"a"], dtype=object),
    }
    with pytest.raises(ModelError, match="the model rejected the inputs"):
        multi.run(wrong_width)
    numbers_as_text = {**wrong_width, "k": np.ones((1, 3), np.int64)}
    numbers_as_text["s"] = np.array([1], dtype=object)  # tf.constant refuses it as a string
    with pytest.raises(ModelError, match="the model rejected the inputs"):
        multi.run(numbers_as_text)


def test_functions_without_a_safe_flat_call_keep_the_structured_call(scorer: Loaded) -> None:
    function = scorer.public.signatures["serving_default"]
    dtypes = scorer.servable.signature("").input_dtypes
    assert FlatCall.of(function, dtypes) is not None
    assert FlatCall.of(lambda **kwargs: kwargs, dtypes) is None  # not a ConcreteFunction
    assert FlatCall.of(function, {"indices": dtypes["indices"]}) is None  # other names
    renamed = {"ids": dtypes["indices"], "values": dtypes["values"]}
    assert FlatCall.of(function, renamed) is None
    other_dtype = {**dtypes, "values": tf.float64.as_datatype_enum}  # SignatureDef disagrees
    assert FlatCall.of(function, other_dtype) is None


# -- TensorFlow's thread pools --------------------------------------------------------------------


def test_thread_flags_size_tensorflows_pools_before_anything_runs() -> None:
    code = (
        "from mlcycle.modelserver import threads\n"
        "threads.configure(intra_op=1, inter_op=2)\n"
        "import tensorflow as tf\n"
        "tf.constant(1.0) + 1.0\n"  # the runtime starts with the pools sized
        "print(tf.config.threading.get_intra_op_parallelism_threads(),"
        " tf.config.threading.get_inter_op_parallelism_threads())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["1", "2"]


def test_thread_flags_warn_once_tensorflow_already_runs(caplog: pytest.LogCaptureFixture) -> None:
    _ = tf.constant(1.0) + 1.0  # this process's runtime is started
    intra = tf.config.threading.get_intra_op_parallelism_threads()
    with caplog.at_level(logging.WARNING, logger="mlcycle.modelserver.threads"):
        threads.configure(intra_op=0, inter_op=0)  # TensorFlow's choice: nothing to do
        assert not caplog.records
        threads.configure(intra_op=intra + 1, inter_op=0)
    assert tf.config.threading.get_intra_op_parallelism_threads() == intra
    (record,) = caplog.records
    assert f"--tensorflow_intra_op_parallelism={intra + 1} cannot apply" in record.getMessage()


# -- gRPC workers ---------------------------------------------------------------------------------


def test_grpc_workers_are_few_unless_batching_or_the_flag_asks(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, log_level="WARNING")
    config = tmp_path / "batching.config"
    config.write_text("max_batch_size { value: 40 }\n")

    def workers(**options: Any) -> int:
        base = {"model_base_path": str(tmp_path / "m"), "port": 0, "rest_api_port": None}
        server = ModelServer(
            ModelServerOptions.from_settings(
                settings.modelserver,
                host=settings.host,
                model_name=settings.trainer.model_name,
                **base,
                **options,
            ),
            settings.modelserver,
            models_dir=settings.trainer.models_dir,
            edge=settings.edge,
        )
        return server._grpc_workers()

    assert workers() == 4
    assert workers(grpc_max_threads=12) == 12
    assert workers(enable_batching=True, batching_parameters_file=str(config)) == 80
    assert (
        workers(enable_batching=True, batching_parameters_file=str(config), grpc_max_threads=9) == 9
    )


# -- the heap -------------------------------------------------------------------------------------


def test_the_heap_is_refrozen_on_each_change_and_unloaded_versions_are_freed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    export = export_sparse_scorer(tmp_path / "export")
    base = tmp_path / "models" / "m"
    copy_version(export, base, 1)
    manager = ModelManager(model_settings(single_model_config("m", str(base)), "test"))
    HeapFreezer(manager).install()
    try:
        with caplog.at_level(logging.INFO, logger="mlcycle.modelserver.heap"):
            manager.sync()
            assert gc.get_freeze_count() > 0  # the loaded model is out of the collector's way
            first = weakref.ref(manager.resolve("m"))
            manager.sync()  # nothing changed: nothing to do
            assert len(caplog.records) == 1
            copy_version(export, base, 2)  # the latest policy unloads 1 once 2 serves
            manager.sync()
            assert len(caplog.records) == 2
        assert manager.resolve("m").version == 2
        gc.collect()
        assert first() is None  # unfrozen before the unload's collection: nothing leaks
    finally:
        manager.close()
        gc.unfreeze()
