"""A TensorFlow-Serving wire-compatible model server, built on TensorFlow.

In containers mlcycle runs the real ``tensorflow/serving`` image; where its
binary cannot be installed, this server stands in for it. Clients cannot tell
them apart: the gRPC API is TF Serving's (``tensorflow.serving.PredictionService``
and ``ModelService``, the official tensorflow-serving-api stubs on both sides),
the REST API is TF Serving's (``/v1/models/{name}[/versions/{v}|/labels/{l}]``
with ``:predict``, ``:classify``, ``:regress``, ``/metadata``), the model layout
is TF Serving's (``<base_path>/<version>/`` SavedModels, numeric folders only),
and so are the command line, the ``ModelServerConfig`` file, version policies,
version labels, warm-up files and batching parameters.

Command line (``tensorflow_model_server``'s flags)::

    mlcycle modelserver --port=8500 --rest_api_port=8501 \\
        --model_name=toxicity --model_base_path=/models/toxicity
    mlcycle modelserver --model_config_file=/models/models.config \\
        --model_config_file_poll_wait_seconds=5 --enable_batching

In-process (tests, tools)::

    from mlcycle.modelserver import ModelServer, ModelServerOptions

    options = ModelServerOptions(
        model_name="toxicity", model_base_path="/models/toxicity", port=0, rest_api_port=0
    )
    with ModelServer(options) as server:   # start() waits for the first load pass
        server.grpc_port, server.rest_port  # the bound ports
        server.manager.status("toxicity")   # version states
    # ModelServerOptions.from_settings(settings.modelserver, host=..., model_name=...,
    # **overrides) takes mlcycle's defaults.
    # rest_api_port=0 picks a free port here; None turns REST off (--rest_api_port=0 on
    # the command line, as in TF Serving). port=0 picks a free gRPC port.

As a child process (the real command, ports picked in the parent)::

    from mlcycle.modelserver import ModelServerProcess

    with ModelServerProcess(["--model_name=toxicity", "--model_base_path=/models/toxicity"]) as p:
        p.grpc_address, p.rest_url           # start() returns once /readyz answers 200

Modules: ``flags`` (command line), ``config`` (config files), ``versions``
(layout, policies), ``manager`` (version life cycle), ``watcher`` (polling),
``servable`` (a loaded version), ``calls`` (its functions called with flat
tensors), ``prediction`` (Predict/Classify/Regress/metadata), ``tensors`` and
``json_tensors`` (conversions), ``examples`` (tf.Example inputs), ``batching``,
``warmup``, ``grpc_api``, ``rest_api``, ``metrics``, ``threads`` (TensorFlow's
pools), ``server`` (the object), ``cli`` (``run``), ``process`` (the child).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcycle.modelserver.cli import run
    from mlcycle.modelserver.flags import ModelServerOptions
    from mlcycle.modelserver.process import ModelServerProcess
    from mlcycle.modelserver.server import ModelServer

__all__ = ["ModelServer", "ModelServerOptions", "ModelServerProcess", "run"]

_EXPORTS = {
    "ModelServer": "mlcycle.modelserver.server",
    "run": "mlcycle.modelserver.cli",
    "ModelServerOptions": "mlcycle.modelserver.flags",
    "ModelServerProcess": "mlcycle.modelserver.process",
}


def __getattr__(name: str) -> Any:
    # Imported on first use: the server pulls in TensorFlow, which takes seconds, and
    # ModelServerProcess / ModelServerOptions users should not pay for it.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
