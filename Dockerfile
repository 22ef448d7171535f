# syntax=docker/dockerfile:1.7
# One image per service, one target each; TensorFlow only in the targets that need it
# (trainer, and inference for TF Serving's TensorProto stubs). The model server in
# containers is the tensorflow/serving image itself. Dependencies sit in their own cached layer, below the source.
FROM python:3.11.10-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN useradd --create-home --uid 10001 mlcycle
WORKDIR /app

FROM base AS collector
COPY pyproject.toml README.md ./
COPY services/mlcycle/__init__.py services/mlcycle/__init__.py
RUN pip install '.[collector]' && pip uninstall -y mlcycle
COPY services ./services
RUN pip install --no-deps '.[collector]'
USER 10001
EXPOSE 8001
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8001/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "collector", "api"]

FROM base AS labeler
COPY pyproject.toml README.md ./
COPY services/mlcycle/__init__.py services/mlcycle/__init__.py
RUN pip install '.[labeler]' && pip uninstall -y mlcycle
COPY services ./services
RUN pip install --no-deps '.[labeler]'
# matplotlib writes its font cache under HOME; the root filesystem is read-only in k8s.
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001
EXPOSE 8002
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8002/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "labeler", "api"]

FROM base AS featurizer
COPY pyproject.toml README.md ./
COPY services/mlcycle/__init__.py services/mlcycle/__init__.py
RUN pip install '.[featurizer]' && pip uninstall -y mlcycle
COPY services ./services
RUN pip install --no-deps '.[featurizer]'
USER 10001
EXPOSE 8003 50053
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8003/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "featurizer", "api"]

# TensorFlow (CPU) only here, in the image that trains.
FROM base AS trainer
COPY pyproject.toml README.md ./
COPY services/mlcycle/__init__.py services/mlcycle/__init__.py
RUN pip install '.[trainer]' && pip uninstall -y mlcycle
COPY services ./services
RUN pip install --no-deps '.[trainer]'
ENV MPLCONFIGDIR=/tmp/matplotlib
USER 10001
EXPOSE 8004
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8004/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "trainer", "api"]

# Featurizes in-process and calls TF Serving over gRPC; tensorflow-serving-api brings
# TensorFlow along for its TensorProto messages.
FROM base AS inference
COPY pyproject.toml README.md ./
COPY services/mlcycle/__init__.py services/mlcycle/__init__.py
RUN pip install '.[inference]' && pip uninstall -y mlcycle
COPY services ./services
RUN pip install --no-deps '.[inference]'
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["mlcycle", "inference", "api"]
